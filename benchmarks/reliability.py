"""Reliability benchmark (issue #14): every promise of README's "Reliability" section, tried.

    python benchmarks/reliability.py [--fuzz 300] [--kills 20] [--seed 0] [--out runs/reliability]

Five parts, each a list of cases with one outcome per case:

* bad inputs (hand-written corpus): exit 2 with one ``error:`` line naming the file or option, no
  traceback, no run folder left behind;
* fuzz: random bytes, a real ``.gz`` cut at random offsets, valid text in wrong encodings, random
  values for every option as flags and in a YAML file: either the run is accepted (and finishes) or
  it is one line as above; anything else (an exception, a traceback, a half-written folder) fails;
* malicious files: a pickle payload (or YAML tag) at every place the plugin loads a file from: it
  is refused with one line and the payload never runs;
* damaged run folders (a finished 2-round RSIR run, damaged one way per case): re-running the same
  command ends in results identical to the undamaged run, or in one line naming the file;
* kill soak: a 3-round RSIR run SIGKILLed at ``--kills`` random moments (re-started after each) ends
  with results identical to an uninterrupted run.

Prints a markdown table (tried / handled cleanly / identical after resume) and writes
``<out>/reliability.json``.  tests/test_reliability.py runs a small version of every part.
"""
import argparse
import contextlib
import gzip
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from recstudio_rsir.algorithm.gen_checkpoint import MANIFEST, part_name  # noqa: E402  (after the path is set)
from recstudio_rsir.records import TRAIN_STATE, RunLayout  # noqa: E402

TINY = ['--epochs', '2', '--patience', '2', '--batch_size', '128', '--num_negatives', '32',
        '--model.embed_dim', '16', '--model.hidden_size', '32', '--model.layer_num', '1', '--num_threads', '1',
        '--rsir.m', '2', '--quiet']
RSIR = ['--augment', 'rsir']


# ----------------------------------------------------------------------------------------- helpers

def tiny_dataset(folder, n_users=400, n_items=250, seed=0):
    """A small sequence file (``user item item ...`` lines) from the embedded generator."""
    from recstudio_rsir import data as D
    seqs = D.make_planted(seed, n_users=n_users, n_items=n_items, n_topics=8)
    path = os.path.join(folder, 'tiny.txt')
    with open(path, 'w') as f:
        for u, s in seqs.items():
            f.write(u + ' ' + ' '.join(i for i, _ in s) + '\n')
    return path


def run_cli(data, out, *extra, timeout=900):
    """``run_recstudio.py -m SASRec -d data --output out TINY extra`` in a subprocess."""
    return subprocess.run([sys.executable, 'run_recstudio.py', '-m', 'SASRec', '-d', str(data), '--output',
                           str(out), *TINY, *extra], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def error_line(rc, err, words=()):
    """None when (rc, stderr) is the promised single ``error:`` line holding ``words``; else why not."""
    lines = [ln for ln in err.splitlines() if ln.startswith('error: ')]
    if rc != 2:
        return f'exit {rc}: {err.strip().splitlines()[-1:]}'
    if 'Traceback' in err or len(lines) != 1 or err.rstrip().splitlines()[-1] != lines[0].rstrip():
        return f'not one error line: {err.strip()[-300:]!r}'
    missing = [w for w in words if w not in lines[0]]
    return f'{lines[0]!r} lacks {missing}' if missing else None


def in_process(argv):
    """``cli.main(argv)`` in this process: (exit code, stderr); an exception escaping it is returned
    as exit code None with its repr (the fuzz counts it as a failure)."""
    from recstudio_rsir import cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        import logging
        for h in logging.getLogger('recstudio_rsir').handlers:
            if getattr(h, '_rsir', False):
                h.setStream(err)
        try:
            rc = cli.main(list(argv))
        except BaseException as e:                      # noqa: BLE001 - anything escaping is a failure
            return None, f'{type(e).__name__}: {str(e)[:300]}'
    return rc, err.getvalue()


def comparable(results):
    """A results.json dict without what legitimately differs between two runs of the same command
    (times, the output path, human summaries holding times)."""
    if isinstance(results, dict):
        return {k: comparable(v) for k, v in results.items()
                if 'seconds' not in k and k not in ('summary', 'output', 'wall', 'forward_share')}
    if isinstance(results, list):
        return [comparable(v) for v in results]
    return results


def same_run(a, b):
    """None when run folders ``a`` and ``b`` hold the same results, synthetic rows and model weights."""
    import torch
    from recstudio_rsir.algorithm.loop import load_sequences
    la, lb = RunLayout(a), RunLayout(b)
    ra, rb = (json.load(open(x.results)) for x in (la, lb))
    if comparable(ra) != comparable(rb):
        return 'results.json differs'
    for k in range(len(ra['rounds'])):
        syn = la.synthetic(k)
        if os.path.exists(syn) and load_sequences(syn)[0] != load_sequences(lb.synthetic(k))[0]:
            return f'{os.path.relpath(syn, a)} differs'
        best = la.best_checkpoint(k)
        if os.path.exists(best) and os.path.exists(lb.best_checkpoint(k)):
            wa, wb = (torch.load(x.best_checkpoint(k), weights_only=True)['model'] for x in (la, lb))
            if wa.keys() != wb.keys() or not all(torch.equal(wa[n], wb[n]) for n in wa):
                return f'{os.path.relpath(best, a)} differs'
    return None


# ------------------------------------------------------------------------------------- bad inputs

def bad_input_cases(tmp):
    """(name, argv after ``-m SASRec``, words the one error line must hold): the hand-written corpus."""
    good = gzip.compress(''.join(f'{u} ' + ' '.join(str(1 + (u * 7 + k) % 40) for k in range(6)) + '\n'
                                 for u in range(1, 60)).encode())
    files = {
        'binary.txt': os.urandom(2000).replace(b'\n', b'\xff'),
        'latin1.txt': '1 2 3 4\n2 3 4 5 é\n'.encode('latin-1'),
        'cut.txt.gz': good[:len(good) // 2],
        'corrupt.txt.gz': good[:20] + bytes(200) + good[220:],
        'one_user.txt': b'1 2 3 4 5 6\n',
        'one_item.txt': b'1 5 5 5\n2 5 5 5\n',
        'short.txt': b'1 2\n2 3\n',
        'bad.csv': b'user,item,timestamp\n1,2,noon\n',
        'empty.txt': b'',
        'cfg_latin1.yaml': 'train: {epochs: 2} # \xe9\n'.encode('latin-1'),
    }
    for n, b in files.items():
        with open(os.path.join(tmp, n), 'wb') as f:
            f.write(b)
    ok = ok_file(tmp)
    with open(os.path.join(tmp, 'a_file'), 'w') as f:
        f.write('x')
    cases = [(n, ['-d', os.path.join(tmp, n)], [n]) for n in
             ('binary.txt', 'latin1.txt', 'cut.txt.gz', 'corrupt.txt.gz', 'one_user.txt', 'one_item.txt', 'short.txt',
              'bad.csv', 'empty.txt')]
    cases += [('config not UTF-8', ['-d', ok, '--config', os.path.join(tmp, 'cfg_latin1.yaml')],
               ['cfg_latin1.yaml', 'UTF-8']),
              ('no such file', ['-d', os.path.join(tmp, 'nothere.txt')], ['nothere.txt'])]
    for opt, val in [('--epochs', '0'), ('--epochs', 'abc'), ('--rsir.p', 'abc'), ('--rsir.p', '2'),
                     ('--rsir.temperature', 'x'), ('--learning_rate', 'fast'), ('--rsir.max_len', '1'),
                     ('--rsir.batch_size', '0'), ('--num_negatives', '-3'), ('--num_threads', 'many'),
                     ('--rsir.keep_failed_step', 'maybe'), ('--rsir.m', '2.5'), ('--train.seed', 'x'),
                     ('--rsir.tau', '-1'), ('--augment', 'nonsense'), ('--train.device', 'tpu'),
                     ('--model.embed_dim', '0'), ('--model.head_num', '3'), ('--model.dropout_rate', '1.5'),
                     ('--model.activation', 'swish'), ('--nonsense.option', '1'), ('--rsir.fidelity', 'sometimes'),
                     ('--aug.seed', 'x'), ('--save_every_s', '-1'), ('--augment', '-.inf'), ('--seed', 'abc')]:
        cases.append((f'{opt} {val}', ['-d', ok, opt, val], [opt.lstrip('-').split('.')[-1]]))
    cases.append(('output is a file', ['-d', ok, '--output', os.path.join(tmp, 'a_file')], ['a_file', 'is a file']))
    return cases


def ok_file(tmp):
    path = os.path.join(tmp, 'ok.txt')
    if not os.path.exists(path):
        with open(path, 'w') as f:
            f.writelines(f'{u} ' + ' '.join(str(1 + (u * 7 + k) % 40) for k in range(6)) + '\n' for u in range(1, 60))
    return path


def try_input(name, argv, words, tmp, accept_ok=False):
    """Run one input case in-process; returns (outcome, detail): outcome is 'one line' (the promised
    error), 'accepted' (only when ``accept_ok``: the run finished) or 'FAILED'."""
    out = os.path.join(tmp, 'out_%08x' % (hash(name) & 0xffffffff))
    if '--output' not in argv:
        argv = argv + ['--output', out]
    if not {'--epochs', '--train.epochs'} & set(argv):
        argv = argv + ['--epochs', '1']
    rc, err = in_process(['-m', 'SASRec', *argv, '--quiet'])
    if rc == 0 and accept_ok:
        done = os.path.exists(RunLayout(out).results)
        shutil.rmtree(out, ignore_errors=True)
        return ('accepted', '') if done else ('FAILED', f'{name}: exit 0 without results.json')
    why = error_line(rc, err, words) if rc is not None else err
    if why is None and os.path.exists(os.path.join(out, 'config.yaml')):
        why = 'left a run folder behind'
    shutil.rmtree(out, ignore_errors=True)
    return ('one line', '') if why is None else ('FAILED', f'{name}: {why}')


# ------------------------------------------------------------------------------------------- fuzz

PLAIN_OPTIONS = ('epochs', 'patience', 'batch_size', 'learning_rate', 'num_negatives')
VALUES = ['-1', '0', '1', '2', '3', '7', '0.5', '1.5', '-0.25', 'abc', "''", 'true', 'false', 'null', '[1, 2]',
          '{a: 1}', '.nan', '.inf', '-.inf', '1e-3', '0x10', 'x' * 300, 'ünï', '"3"', '~', 'on', 'none', 'cpu',
          'cuda:7', 'sample', 'greedy', 'all', 'real', 'history', 'popularity', 'SASRec']


def fuzz_option_names():
    """Every option a run takes: ``group.key`` for each default plus SASRec's model options."""
    from recstudio_rsir import config as C
    names = [f'{g}.{k}' for g in C.GROUPS if g != 'model' for k in C.DEFAULTS[g]]
    names += ['model.' + k for k in ('embed_dim', 'hidden_size', 'layer_num', 'head_num', 'dropout_rate',
                                     'activation', 'layer_norm_eps')]
    return names + ['augment', 'model_name', 'plugins']


def fuzz_cases(tmp, n, rng, gz_source=None):
    """``n`` random cases as (name, argv, kind).  Kinds: bytes, gz-cut, encoding, flag, yaml."""
    text = open(ok_file(tmp), encoding='utf-8').read()
    if gz_source is None:
        gz_source = os.path.join(tmp, 'src.txt.gz')
        with gzip.open(gz_source, 'wt') as f:
            f.write(open(tiny_dataset(tmp), encoding='utf-8').read())
    gz = open(gz_source, 'rb').read()
    options = fuzz_option_names()
    kinds = ['bytes', 'gz-cut', 'encoding', 'flag', 'flag', 'yaml', 'yaml']
    cases = []
    for i in range(n):
        kind = rng.choice(kinds)
        ok = ok_file(tmp)
        if kind == 'bytes':
            p = os.path.join(tmp, f'fz{i}' + rng.choice(['.txt', '.txt.gz', '.csv', '.inter']))
            with open(p, 'wb') as f:
                f.write(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000))))
            cases.append((f'random bytes ({os.path.basename(p)})', ['-d', p], kind))
        elif kind == 'gz-cut':
            p = os.path.join(tmp, f'fz{i}.txt.gz')
            with open(p, 'wb') as f:
                f.write(gz[:rng.randint(0, len(gz) - 1)])
            cases.append((f'.gz cut at a random offset ({os.path.basename(p)})', ['-d', p], kind))
        elif kind == 'encoding':
            enc = rng.choice(['utf-16', 'utf-16-le', 'utf-32', 'cp500', 'latin-1+accents', 'utf-8-sig+nul'])
            p = os.path.join(tmp, f'fz{i}.txt')
            if enc == 'latin-1+accents':
                body = text.replace('1', 'é', 3).encode('latin-1')
            elif enc == 'utf-8-sig+nul':
                body = ('\ufeff' + text[:200] + '\x00' + text[200:]).encode('utf-8')
            else:
                body = text.encode(enc)
            with open(p, 'wb') as f:
                f.write(body)
            cases.append((f'text as {enc}', ['-d', p], kind))
        else:
            opt = rng.choice(options)
            val = rng.choice(VALUES)
            extra = RSIR + ['--rsir.rounds', '1'] if opt.startswith(('rsir.', 'aug.')) else []
            if opt.startswith('aug.'):
                extra = ['--augment', 'reorder', '--rsir.rounds', '1']
            if kind == 'flag':
                cases.append((f'--{opt} {val}', ['-d', ok, *extra, f'--{opt}', val], kind))
            else:
                p = os.path.join(tmp, f'fz{i}.yaml')
                if '.' in opt:
                    group, key = opt.split('.')
                    body = f'{group}:\n  {key}: {val}\n'
                else:
                    body = f'{opt}: {val}\n'
                if rng.random() < 0.2:                 # structural damage on top
                    body = rng.choice([body.replace(':', '', 1), '- ' + body, body + '\t bad: [\n',
                                       body + body, '!!python/object/apply:os.getcwd []\n'])
                with open(p, 'w', encoding='utf-8') as f:
                    f.write(body)
                cases.append((f'YAML {body.strip()[:60]!r}', ['-d', ok, *extra, '--config', p], kind))
    return cases


# ------------------------------------------------------------------------------------------- runs

def finished_run(tmp, data, rounds=2):
    """A finished RSIR run of ``rounds`` rounds on ``data`` (the reference the damage cases copy)."""
    out = os.path.join(tmp, f'reference_{rounds}')
    if not os.path.exists(RunLayout(out).results):
        r = run_cli(data, out, *RSIR, '--rsir.rounds', str(rounds))
        if r.returncode != 0:
            raise SystemExit(f'the reference run failed: {r.stderr[-2000:]}')
    return out


class Payload:
    """Unpickling this creates the folder ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _rerecord(metrics, key, path, sub=None):
    """What an attacker who also edits the records does: store the planted file's size and hash."""
    from recstudio_rsir.atomic import file_digest
    with open(metrics) as f:
        m = json.load(f)
    if sub:
        m[key][sub] = file_digest(path)
    else:
        m[key] = file_digest(path)
    with open(metrics, 'w') as f:
        json.dump(m, f)


def malicious_cases():
    """(name, plant(run_folder, evil_dir, marker) -> extra argv, words of the one error line)."""
    import torch

    def state(run, evil, marker):
        os.remove(RunLayout(run).results)
        os.remove(RunLayout(run).metrics(1))
        torch.save({'model': Payload(marker)}, os.path.join(RunLayout(run).model_dir(1), TRAIN_STATE))
        return ['train_state.pt', 'not a loadable checkpoint']

    def best(run, evil, marker):
        os.remove(RunLayout(run).results)
        p = RunLayout(run).best_checkpoint(0)
        torch.save({'model': Payload(marker)}, p)
        _rerecord(RunLayout(run).metrics(0), 'checkpoint_digest', p)
        return ['best.pt', 'not a loadable checkpoint']

    def outside(run, evil, marker):
        os.remove(RunLayout(run).results)
        p = os.path.join(evil, 'elsewhere.pt')
        torch.save({'model': Payload(marker)}, p)
        m = RunLayout(run).metrics(0)
        _rerecord(m, 'checkpoint_digest', p)
        with open(m) as f:
            d = json.load(f)
        d['checkpoint_in_round'] = os.path.relpath(p, RunLayout(run).round_dir(0))
        with open(m, 'w') as f:
            json.dump(d, f)
        return ['metrics.json', 'outside the run folder']

    def npz(run, evil, marker):
        os.remove(RunLayout(run).results)
        p = RunLayout(run).synthetic(1)
        with open(p, 'wb') as f:
            np.savez(f, items=np.array([Payload(marker)], dtype=object), offsets=np.array([0, 1]))
        _rerecord(RunLayout(run).generation(1), 'artifacts', p, 'synthetic.npz')
        return ['synthetic.npz', 'damaged']

    def cache(run, evil, marker):
        import pickle
        from recstudio_rsir import host
        from recstudio.utils.utils import md5
        os.remove(RunLayout(run).results)
        ds = RunLayout(run).dataset_dir
        name = next(n for n in os.listdir(ds) if os.path.isdir(os.path.join(ds, n)) and not n.startswith('.'))
        conf = host.dataset_config(name, os.path.join(ds, name), 50)
        folder = os.path.join(ds, '.recstudio', 'cache')
        os.makedirs(folder, exist_ok=True)
        for cfg in (conf, dict(conf, save_cache=False)):
            with open(os.path.join(folder, md5(cfg)), 'wb') as f:
                pickle.dump(Payload(marker), f)
        return None                              # not read at all: the run finishes

    def teacher(run, evil, marker):
        p = os.path.join(evil, 'teacher.pt')
        torch.save({'model': Payload(marker)}, p)
        shutil.rmtree(run)
        return ['teacher.pt', 'not a loadable checkpoint'], ['--rsir.teacher', 'SASRec', '--rsir.teacher_ckpt', p]

    def yaml_tag(run, evil, marker):
        p = os.path.join(evil, 'evil.yaml')
        with open(p, 'w') as f:
            f.write(f'train:\n  epochs: !!python/object/apply:os.mkdir ["{marker}"]\n')
        shutil.rmtree(run)
        return ['evil.yaml'], ['--config', p]

    return [('train_state.pt of a resumed round', state), ('best.pt named by metrics.json (records edited too)', best),
            ('metrics.json naming a checkpoint outside the run', outside),
            ('synthetic.npz with an object array (records edited too)', npz),
            ("RecStudio's dataset pickle cache", cache), ('--rsir.teacher_ckpt', teacher),
            ('--config YAML with a python tag', yaml_tag)]


def damage_cases():
    """(name, damage(run_folder) -> None, expect): expect is 'identical' (the re-run must give the
    undamaged results) or the words of the one error line.  The reference is a 2-round RSIR run."""
    from recstudio_rsir.algorithm.loop import load_sequences, save_sequences

    def rows_removed(run, rerecord=False):
        f = RunLayout(run).synthetic(1)
        rows, origin = load_sequences(f)
        cut = max(1, len(rows) // 10)
        save_sequences(f, rows[cut:], origin[cut:])
        if rerecord:
            _rerecord(RunLayout(run).generation(1), 'artifacts', f, 'synthetic.npz')

    def truncate(f, keep=100):
        with open(f, 'rb') as fh:
            b = fh.read()
        with open(f, 'wb') as fh:
            fh.write(b[:keep] if keep < len(b) else b[:len(b) // 2])

    def converted(run):
        ds = RunLayout(run).dataset_dir
        name = next(n for n in os.listdir(ds) if os.path.isdir(os.path.join(ds, n)) and not n.startswith('.'))
        truncate(os.path.join(ds, name, name + '.inter'), keep=10 ** 9)

    def garbage(f, data=b'\x00{not json'):
        with open(f, 'wb') as fh:
            fh.write(data)

    def mid_training_garbage_state(run):
        os.remove(RunLayout(run).metrics(2))
        garbage(os.path.join(RunLayout(run).model_dir(2), TRAIN_STATE), os.urandom(300))

    def progress_left(run, manifest):
        """Round 2 not generated yet, with saved generation progress (README "Resume") in its folder:
        ``manifest`` is the progress.json text, beside a part of random bytes."""
        shutil.rmtree(RunLayout(run).round_dir(2))
        folder = RunLayout(run).generation_progress(2)
        os.makedirs(folder)
        garbage(os.path.join(folder, part_name(0)), os.urandom(300))
        garbage(os.path.join(folder, MANIFEST), manifest)

    def stale_temporaries(run):
        lay = RunLayout(run)
        for f in (lay.path('.results.json.k3x9_q.tmp'), os.path.join(lay.round_dir(1), '.synthetic.npz.ab12cd34.tmp'),
                  os.path.join(lay.model_dir(2), '.best.pt.zz99zz99.tmp')):
            with open(f, 'w') as fh:
                fh.write('half')

    return [
        ('synthetic.npz truncated', lambda r: truncate(RunLayout(r).synthetic(1)), ['synthetic.npz']),
        ('synthetic.npz valid, 10% of rows removed', rows_removed, ['synthetic.npz', 'changed since it was written']),
        ('... and generation.json re-recorded', lambda r: rows_removed(r, True), ['metrics.json', 'rows']),
        ('synthetic.npz deleted (round trained)', lambda r: os.remove(RunLayout(r).synthetic(1)), 'identical'),
        ('generation.json deleted', lambda r: os.remove(RunLayout(r).generation(1)), 'identical'),
        ('metrics.json garbage', lambda r: garbage(RunLayout(r).metrics(1)), ['metrics.json', 'damaged']),
        ('metrics.json deleted (training complete)', lambda r: os.remove(RunLayout(r).metrics(1)),
         'identical'),
        ('best.pt deleted', lambda r: os.remove(RunLayout(r).best_checkpoint(0)), ['best.pt', 'missing']),
        ("best.pt replaced by another round's", lambda r: shutil.copy(RunLayout(r).best_checkpoint(1),
                                                                       RunLayout(r).best_checkpoint(0)),
         ['best.pt', 'changed since it was written']),
        ('train_state.pt garbage (mid-training)', mid_training_garbage_state, ['train_state.pt']),
        ('converted .inter truncated', converted, 'identical'),
        ('results.json deleted', lambda r: None, 'identical'),
        ('results.json garbage', lambda r: garbage(RunLayout(r).results), 'identical'),
        ('temporaries of interrupted writes', stale_temporaries, 'identical'),
        ('generation progress garbage', lambda r: progress_left(r, b'\x00{not json'), 'identical'),
        ('generation progress of another generator', lambda r: progress_left(
            r, json.dumps({'fingerprint': '0' * 64, 'parts': [{'file': part_name(0), 'trajectories': 3,
                                                              'digest': {'bytes': 300, 'sha256': '0' * 64}}],
                           'counters': {}, 'seconds': 1.0, 'forward_seconds': 1.0}).encode()), 'identical'),

        ('folder moved', 'move', 'identical'),
        ('folder copied, original deleted', 'copy', 'identical'),
    ]


def try_damage(name, damage, expect, ref, data, tmp):
    """Copy ``ref``, damage it, re-run its command; returns (outcome, detail)."""
    run = os.path.join(tmp, 'damaged_%08x' % (hash(name) & 0xffffffff))
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(ref, run)
    if damage in ('move', 'copy'):
        other = run + '_elsewhere'
        shutil.rmtree(other, ignore_errors=True)
        (shutil.move if damage == 'move' else shutil.copytree)(run, other)
        if damage == 'copy':
            shutil.rmtree(run)
        run = other
    else:
        damage(run)
    if name != 'results.json garbage' and os.path.exists(RunLayout(run).results):
        os.remove(RunLayout(run).results)
    r = run_cli(data, run, *RSIR, '--rsir.rounds', '2')
    try:
        if expect == 'identical':
            if r.returncode != 0:
                return 'FAILED', f'exit {r.returncode}: {r.stderr.strip()[-300:]}'
            left = [f for _, _, fs in os.walk(run) for f in fs if f.endswith('.tmp') or f == '.lock']
            why = same_run(ref, run) or (f'left {left}' if left else None)
            return ('identical', '') if why is None else ('FAILED', why)
        why = error_line(r.returncode, r.stderr, expect)
        return ('one line', '') if why is None else ('FAILED', why)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def try_malicious(name, plant, ref, data, tmp):
    run = os.path.join(tmp, 'evil_%08x' % (hash(name) & 0xffffffff))
    evil = run + '_files'
    for f in (run, evil):
        shutil.rmtree(f, ignore_errors=True)
    shutil.copytree(ref, run)
    os.makedirs(evil)
    marker = os.path.join(evil, 'PAYLOAD_RAN')
    planted = plant(run, evil, marker)
    words, extra = (planted if isinstance(planted, tuple) else (planted, []))
    r = run_cli(data, run, *RSIR, '--rsir.rounds', '2', *extra)
    ran = os.path.exists(marker)
    if words is None:
        why = None if r.returncode == 0 else f'exit {r.returncode}: {r.stderr.strip()[-300:]}'
    else:
        why = error_line(r.returncode, r.stderr, words)
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(evil, ignore_errors=True)
    if ran:
        return 'FAILED', 'THE PAYLOAD RAN'
    return ('refused, not run', '') if why is None else ('FAILED', why)


def kill_soak(data, tmp, kills, rng, rounds=3):
    """SIGKILL a ``rounds``-round RSIR run at ``kills`` random moments (each within the time an
    uninterrupted run takes), re-start it after each; a run that finishes before its kill is
    compared and a new one begun.  Training runs batches of 16 and saves a resume state after every
    one (``--save_every_s``), so most kills leave one from inside an epoch.  Returns (kills landed,
    kills whose run ended identical to the uninterrupted one, runs compared, [failures], kills that left
    a resume state from inside an epoch)."""
    ref = os.path.join(tmp, 'soak_reference')
    t0 = time.time()
    finished_run_args = [*RSIR, '--rsir.rounds', str(rounds), '--save_every_s', '1e-6', '--batch_size', '16']
    if not os.path.exists(RunLayout(ref).results):
        r = run_cli(data, ref, *finished_run_args)
        if r.returncode != 0:
            raise SystemExit(f'the soak reference failed: {r.stderr[-2000:]}')
    t_ref = time.time() - t0
    landed, identical, compared, failures, n, in_run, in_epoch = 0, 0, 0, [], 0, 0, 0
    cmd = [sys.executable, 'run_recstudio.py', '-m', 'SASRec', '-d', str(data), *TINY, *finished_run_args]
    run = None
    while landed < kills or run is not None:
        if run is None:
            n += 1
            run = os.path.join(tmp, f'soak_{n}')
            shutil.rmtree(run, ignore_errors=True)
        proc = subprocess.Popen(cmd + ['--output', run], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        if landed < kills:
            try:
                proc.wait(timeout=rng.uniform(0.5, max(1.0, t_ref)))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                landed += 1
                in_run += 1
                in_epoch += any(_in_epoch_state(os.path.join(RunLayout(run).model_dir(k), TRAIN_STATE))
                                for k in range(rounds + 1))
                continue
        else:
            proc.wait()
        err = proc.stderr.read()
        if proc.returncode != 0:
            failures.append(f'{run}: exit {proc.returncode}: {err.strip()[-300:]}')
        else:
            why = same_run(ref, run)
            compared += 1
            if why:
                failures.append(f'{run}: {why}')
            else:
                identical += in_run
        shutil.rmtree(run, ignore_errors=True)
        run, in_run = None, 0
    return landed, identical, compared, failures, in_epoch


def _in_epoch_state(path):
    """Whether ``path`` is a training resume state saved inside an epoch."""
    from recstudio_rsir.algorithm.training import load_checkpoint
    try:
        return os.path.exists(path) and load_checkpoint(path).get('in_epoch') is not None
    except Exception:                                   # noqa: BLE001 - the resumed run reports a bad file
        return False


# ------------------------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--fuzz', type=int, default=300, help='random fuzz cases')
    ap.add_argument('--kills', type=int, default=20, help='SIGKILLs of the soak')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default='runs/reliability')
    ap.add_argument('--gz', default=os.path.join(ROOT, '..', 'shared', 'data', 'seqrec', 'Beauty.txt.gz'),
                    help='a real .gz to cut at random offsets (default: the shared Beauty file when present)')
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    rng = random.Random(a.seed)
    tmp = os.path.abspath(a.out)
    shutil.rmtree(os.path.join(tmp, 'work'), ignore_errors=True)
    work = os.path.join(tmp, 'work')
    os.makedirs(work)
    data = tiny_dataset(work)
    rows, details = [], []

    def record(part, outcomes, resumed=None):
        good = sum(o != 'FAILED' for o, _ in outcomes)
        rows.append({'part': part, 'tried': len(outcomes), 'handled cleanly': good,
                     'identical after resume': resumed})
        details.extend({'part': part, 'outcome': o, 'detail': d} for o, d in outcomes if o == 'FAILED')
        print(f'{part}: {good}/{len(outcomes)}', flush=True)

    t = time.time()
    record('bad inputs (hand-written)', [try_input(n, args, w, work) for n, args, w in bad_input_cases(work)])
    gz = a.gz if os.path.exists(a.gz) else None
    fz = fuzz_cases(work, a.fuzz, rng, gz)
    for kind in ('bytes', 'gz-cut', 'encoding', 'flag', 'yaml'):
        cases = [c for c in fz if c[2] == kind]
        outs = [try_input(n, args, [], work, accept_ok=kind in ('flag', 'yaml')) for n, args, _ in cases]
        details.extend({'part': f'fuzz {kind}', 'outcome': o, 'case': c[0]} for c, (o, _) in zip(cases, outs)
                       if o == 'accepted')
        record(f'fuzz: {kind}', outs)
    ref = finished_run(work, data)
    record('malicious files', [try_malicious(n, f, ref, data, work) for n, f in malicious_cases()])
    outs = [try_damage(n, f, e, ref, data, work) for n, f, e in damage_cases()]
    record('damaged run folders', outs, resumed=sum(o == 'identical' for o, _ in outs))
    landed, identical, compared, failures, in_epoch = kill_soak(data, work, a.kills, rng)
    rows.append({'part': f'SIGKILL soak (3-round RSIR; {landed} kills over {compared} runs, {in_epoch} inside '
                         'an epoch)', 'tried': landed,
                 'handled cleanly': identical, 'identical after resume': identical, 'runs': compared,
                 'in_epoch': in_epoch})
    details.extend({'part': 'soak', 'outcome': 'FAILED', 'detail': f} for f in failures)
    print(f'soak: {landed} kills over {compared} runs, {len(failures)} failures', flush=True)

    table = ['| part | tried | handled cleanly | identical after resume |', '|---|---:|---:|---:|']
    for r in rows:
        table.append(f"| {r['part']} | {r['tried']} | {r['handled cleanly']} | "
                     f"{'' if r['identical after resume'] is None else r['identical after resume']} |")
    print('\n'.join(table))
    from recstudio_rsir.atomic import write_json
    write_json(os.path.join(tmp, 'reliability.json'),
               {'rows': rows, 'failures': [d for d in details if d['outcome'] == 'FAILED'],
                'accepted_fuzz_cases': [d['case'] for d in details if d['outcome'] == 'accepted'],
                'fuzz': a.fuzz, 'kills': a.kills, 'seed': a.seed, 'seconds': time.time() - t})
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(d['outcome'] == 'FAILED' for d in details) else 0


if __name__ == '__main__':
    sys.exit(main())
