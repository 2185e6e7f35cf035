"""Shared by the examples: the command-line switches every example takes."""
import argparse


def example_args(description, default_output, extra=None):
    p = argparse.ArgumentParser(description=description)
    if extra:
        extra(p)
    p.add_argument('--output', default=default_output, help='run folder (re-running resumes)')
    p.add_argument('--quick', action='store_true', help='2 epochs per round: a smoke run (what the tests use)')
    p.add_argument('--device', default='cpu', help='cpu or cuda:N')
    a = p.parse_args()
    # The demo's recipe (yamls/demo.yaml), capped at 40 epochs: a few minutes per round on 2 CPU cores;
    # --quick for a few seconds per round.
    a.train = {'epochs': 2 if a.quick else 40, 'patience': 5, 'batch_size': 256, 'learning_rate': 0.002,
               'device': a.device}
    a.model = {'dropout_rate': 0.2}
    return a
