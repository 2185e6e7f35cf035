"""Config merging and the command line (errors are one line, exit 2, nothing half-written)."""
import os
import subprocess
import sys

import pytest

from recstudio_rsir import config as C
from recstudio_rsir.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_merge_order_defaults_model_yaml_config_flags(tmp_path):
    f = tmp_path / 'c.yaml'
    f.write_text('train:\n  epochs: 7\n  batch_size: 64\nrsir:\n  tau: 5\n')
    cfg = C.resolve(config_path=str(f), flags={'epochs': 9, 'rsir.m': 2, 'layer_num': 1},
                    top={'model_name': 'SASRec'})
    assert cfg['train']['epochs'] == 9            # flag beats file
    assert cfg['train']['batch_size'] == 64       # file beats default
    assert cfg['rsir']['tau'] == 5 and cfg['rsir']['m'] == 2
    assert cfg['model']['layer_num'] == 1          # unknown flat keys go to the backbone
    assert cfg['train']['patience'] == C.DEFAULTS['train']['patience']


@pytest.mark.parametrize('flags,needle', [
    ({'rsir.tua': 3}, 'rsir.tua: unknown option'),
    ({'rsir.p': 1.5}, 'rsir.p'),
    ({'rsir.fidelity': 'maybe'}, 'one of on, off'),
    ({'train.device': 'gpu'}, 'cpu, cuda or cuda:N'),
    ({'bogus.x': 1}, 'unknown group'),
])
def test_bad_options_are_named(flags, needle):
    with pytest.raises(UserError, match=needle.replace('.', r'\.')):
        C.resolve(flags=flags)


def test_fidelity_off_written_bare(tmp_path):
    """`--rsir.fidelity off` and an unquoted `fidelity: off` in a YAML (YAML 1.1 reads it as false)
    both mean the ablation, and the config keeps the word."""
    cfg = C.resolve(flags={'rsir.fidelity': C.parse_value('off')})
    assert cfg['rsir']['fidelity'] == 'off' and C.tau_value(cfg['rsir']) == float('inf')
    f = tmp_path / 'c.yaml'
    f.write_text('rsir:\n  fidelity: off\n')
    assert C.resolve(config_path=str(f))['rsir']['fidelity'] == 'off'
    f.write_text('rsir:\n  fidelity: on\n')
    assert C.resolve(config_path=str(f))['rsir']['fidelity'] == 'on'


def test_exponent_numbers_without_a_dot_are_numbers(tmp_path):
    """`--learning_rate 1e-3` and `learning_rate: 1e-3` in a YAML are 0.001 (PyYAML alone reads them as
    strings, and the option check refused them); words and malformed numbers stay strings."""
    cfg = C.resolve(flags={'learning_rate': C.parse_value('1e-3'), 'rsir.p': C.parse_value('5E-1')})
    assert cfg['train']['learning_rate'] == 0.001 and cfg['rsir']['p'] == 0.5
    f = tmp_path / 'c.yaml'
    f.write_text('train:\n  learning_rate: 5e-4\n  weight_decay: 1.5E-6\n')
    cfg = C.resolve(config_path=str(f))
    assert cfg['train']['learning_rate'] == 0.0005 and cfg['train']['weight_decay'] == 1.5e-6
    assert [C.parse_value(t) for t in ('3', '0.5', '1e', 'e5', 'abc', '[1, 2e-3]')] == [3, 0.5, '1e', 'e5', 'abc',
                                                                                        [1, 0.002]]
    r = subprocess.run([sys.executable, 'run_recstudio.py', '-m', 'SASRec', '-d', 'planted', '--learning_rate', '1e-x',
                        '--output', str(tmp_path / 'x')], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "train.learning_rate: '1e-x' is not valid" in r.stderr


def test_bad_yaml_names_file_and_line(tmp_path):
    f = tmp_path / 'bad.yaml'
    f.write_text('train:\n  epochs: [1,\n')
    with pytest.raises(UserError, match=r'bad.yaml:\d+: invalid YAML'):
        C.resolve(config_path=str(f))
    f.write_text('trian:\n  epochs: 1\n')
    with pytest.raises(UserError, match='unknown key `trian`'):
        C.resolve(config_path=str(f))


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, 'run_recstudio.py', *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize('args,needle', [
    (['-m', 'NoSuchModel', '-d', 'embedded'], 'unknown model; plugin models'),
    (['-m', 'SASRec', '-d', '/nonexistent/data.txt'], 'no such file'),
    (['-m', 'SASRec', '-d', 'embedded', '--augment', 'magic'], 'augment'),
    (['-m', 'SASRec', '-d', 'embedded', '--layer_nm', '1'], 'unknown option for SASRec'),
])
def test_cli_errors_one_line_exit_2(tmp_path, args, needle):
    r = _cli(*args, '--output', str(tmp_path / 'o'))
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith('error:') and needle in lines[0]
    assert not os.path.exists(tmp_path / 'o' / 'results.json')


def test_stats_command(small_file):
    r = subprocess.run([sys.executable, '-m', 'recstudio_rsir.cli', 'stats', '-d', small_file], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = {k.strip(): v for k, v in (l.split(':', 1) for l in r.stdout.strip().splitlines())}
    n = sum(1 for _ in open(small_file))
    assert int(out['users']) == n
    assert 0 < float(out['density']) < 1
    from recstudio_rsir.analysis import stats as analysis
    from recstudio_rsir import data
    rows = [[i for i, _ in s] for s in data.read_sequence_file(small_file).values()]
    assert float(out['apen']) == pytest.approx(analysis.apen_summary(rows)['apen'], abs=1e-6)
