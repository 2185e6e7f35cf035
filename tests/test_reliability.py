"""Reliability and security (issue #14, first part): no file a user can hand in is unpickled, damaged
run folders give one line, a failed start does not block the corrected command, one writer per run
folder, temporaries of interrupted writes are cleaned up."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--epochs', '2', '--patience', '2', '--batch_size', '128', '--num_negatives', '32',
        '--model.embed_dim', '16', '--model.hidden_size', '32', '--model.layer_num', '1', '--num_threads', '1',
        '--rsir.m', '2', '--quiet']


class Payload:
    """Unpickling this creates the folder ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _run(data, out, *extra):
    return subprocess.run([sys.executable, 'run_recstudio.py', '-m', 'SASRec', '-d', data, '--output', str(out),
                           *TINY, *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith('error: ')]
    assert len(lines) == 1 and r.stderr.rstrip().splitlines()[-1] == lines[0], r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    """A finished 1-round RSIR run, copied by each test that damages it."""
    base = tmp_path_factory.mktemp('rel')
    from conftest import small_sequences, write_seq_file
    data = write_seq_file(base / 'small.txt', small_sequences())
    out = base / 'run'
    r = _run(data, out, '--augment', 'rsir', '--rsir.rounds', '1')
    assert r.returncode == 0, r.stderr[-2000:]
    return data, out


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize('target', ['train_state', 'best', 'teacher_ckpt'])
def test_malicious_pickles_are_refused_and_never_run(finished, tmp_path, target):
    data, ref = finished
    out = _copy(ref, tmp_path / 'run')
    marker = tmp_path / 'pwned'
    evil = {'model': Payload(str(marker))}
    extra = ('--augment', 'rsir', '--rsir.rounds', '1')
    if target == 'train_state':              # a resumed round's state: remove the finished marks first
        os.remove(out / 'results.json')
        os.remove(out / 'round_1' / 'metrics.json')
        torch.save(evil, out / 'round_1' / 'model' / 'train_state.pt')
        where = 'train_state.pt'
    elif target == 'best':                    # the checkpoint a finished round's metrics.json names
        os.remove(out / 'results.json')
        torch.save(evil, out / 'round_0' / 'model' / 'best.pt')
        where = 'best.pt'
    else:
        evil_path = tmp_path / 'teacher.pt'
        torch.save(evil, evil_path)
        out = tmp_path / 'fresh'
        extra = extra + ('--rsir.teacher', 'SASRec', '--rsir.teacher_ckpt', str(evil_path))
        where = 'teacher.pt'
    r = _run(data, out, *extra)
    _one_line_error(r, where, 'not a loadable checkpoint')
    assert not marker.exists()


def test_recstudio_pickle_cache_is_never_read(finished, tmp_path):
    """RecStudio unpickles '<cache>/cache/<md5 of the dataset config>' when it exists; the plugin
    points that lookup at an empty temporary folder, so a crafted cache in a run folder is inert."""
    import pickle
    from recstudio_rsir import host
    from recstudio.utils.utils import md5
    data, ref = finished
    out = _copy(ref, tmp_path / 'run')
    os.remove(out / 'results.json')
    name = next(n for n in os.listdir(out / 'dataset') if os.path.isdir(out / 'dataset' / n))
    conf = host.dataset_config(name, str(out / 'dataset' / name), 50)
    marker = tmp_path / 'pwned'
    for cfg in (conf, dict(conf, save_cache=False)):
        cache = out / 'dataset' / '.recstudio' / 'cache'
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / md5(cfg), 'wb') as f:
            pickle.dump(Payload(str(marker)), f)
    r = _run(data, out, '--augment', 'rsir', '--rsir.rounds', '1')
    assert r.returncode == 0, r.stderr[-2000:]
    assert not marker.exists()


@pytest.mark.parametrize('damage, words', [
    ('truncate_npz', ['synthetic.npz', 'damaged']),
    ('garbage_metrics', ['metrics.json', 'damaged']),
    ('delete_best', ['best.pt', 'checkpoint missing']),
    ('garbage_state', ['train_state.pt', 'not a loadable checkpoint']),
])
def test_damaged_run_folder_is_one_line(finished, tmp_path, damage, words):
    data, ref = finished
    out = _copy(ref, tmp_path / 'run')
    os.remove(out / 'results.json')
    if damage == 'truncate_npz':
        p = out / 'round_1' / 'synthetic.npz'
        p.write_bytes(p.read_bytes()[:100])
    elif damage == 'garbage_metrics':
        (out / 'round_1' / 'metrics.json').write_bytes(b'\x00{not json')
    elif damage == 'delete_best':
        os.remove(out / 'round_0' / 'model' / 'best.pt')
    else:
        os.remove(out / 'round_1' / 'metrics.json')
        (out / 'round_1' / 'model' / 'train_state.pt').write_bytes(os.urandom(300))
    _one_line_error(_run(data, out, '--augment', 'rsir', '--rsir.rounds', '1'), *words)


def test_synthetic_rows_are_never_unpickled(tmp_path):
    from recstudio_rsir.algorithm.loop import load_sequences
    from recstudio_rsir.errors import UserError
    p = tmp_path / 'synthetic.npz'
    marker = tmp_path / 'pwned'
    np.savez(p, items=np.array([Payload(str(marker))], dtype=object), offsets=np.array([0, 1]))
    with pytest.raises(UserError, match='damaged'):
        load_sequences(str(p))
    assert not marker.exists()


def test_failed_start_does_not_block_the_fixed_command(tmp_path, small_file):
    bad = tmp_path / 'bad.txt'
    bad.write_text('1 2 3 4\n2 5 x 7\n')
    out = tmp_path / 'run'
    _one_line_error(_run(str(bad), out), 'bad.txt:2', 'not an integer')
    assert not out.exists()
    r = _run(small_file, out)
    assert r.returncode == 0, r.stderr[-2000:]


def test_one_writer_per_plain_run_folder(tmp_path, small_file):
    out = tmp_path / 'run'
    out.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    try:
        (out / '.lock').write_text(str(holder.pid))
        _one_line_error(_run(small_file, out), 'being written by process', str(holder.pid))
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is taken over, and temporaries of interrupted writes are removed
    (out / '.results.json.k3x9_q.tmp').write_text('half')
    (out / 'round_0').mkdir()
    (out / 'round_0' / '.metrics.json.ab12cd34.tmp').write_text('half')
    r = _run(small_file, out)
    assert r.returncode == 0, r.stderr[-2000:]
    left = [f for _, _, fs in os.walk(out) for f in fs if f.endswith('.tmp') or f == '.lock']
    assert left == []


def test_report_on_a_damaged_results_file_is_one_line(finished, tmp_path):
    _, ref = finished
    out = _copy(ref, tmp_path / 'run')
    (out / 'results.json').write_text('{"rounds": [{"round": 0}]}')
    r = subprocess.run([sys.executable, '-m', 'recstudio_rsir.cli', 'report', str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    _one_line_error(r, 'results.json', 'damaged')


def _bad_inputs(tmp):
    """(name, command-line arguments after -m SASRec, words the one error line must hold)."""
    import gzip
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
        'cfg_latin1.yaml': 'train: {epochs: 2} # \xe9\n'.encode('latin-1'),
        'suite_binary.yaml': b'\xff\xfe\x00bad',
    }
    for n, b in files.items():
        (tmp / n).write_bytes(b)
    ok = str(tmp / 'ok.txt')
    with open(ok, 'w') as f:
        f.writelines(f'{u} ' + ' '.join(str(1 + (u * 7 + k) % 40) for k in range(6)) + '\n' for u in range(1, 60))
    (tmp / 'a_file').write_text('x')
    cases = [(n, ['-d', str(tmp / n)], [n]) for n in
             ('binary.txt', 'latin1.txt', 'cut.txt.gz', 'corrupt.txt.gz', 'one_user.txt', 'one_item.txt', 'short.txt',
              'bad.csv')]
    cases += [('config not UTF-8', ['-d', ok, '--config', str(tmp / 'cfg_latin1.yaml')], ['cfg_latin1.yaml', 'UTF-8'])]
    for opt, val in [('--epochs', '0'), ('--epochs', 'abc'), ('--rsir.p', 'abc'), ('--rsir.p', '2'),
                     ('--rsir.temperature', 'x'), ('--learning_rate', 'fast'), ('--rsir.max_len', '1'),
                     ('--rsir.batch_size', '0'), ('--num_negatives', '-3'), ('--num_threads', 'many'),
                     ('--rsir.keep_failed_step', 'maybe'), ('--rsir.m', '2.5'), ('--train.seed', 'x'),
                     ('--rsir.tau', '-1'), ('--augment', 'nonsense'), ('--train.device', 'tpu')]:
        cases.append((f'{opt} {val}', ['-d', ok, opt, val], [opt.lstrip('-').split('.')[-1]]))
    cases.append(('output is a file', ['-d', ok, '--output', str(tmp / 'a_file')], ['a_file', 'is a file']))
    return cases


def test_bad_inputs_are_one_line_each(tmp_path, capsys):
    """A corpus of bad files and option values: every one is a single `error:` line, exit 2, no
    exception escaping the command line, and no run folder left behind (issue #14 item 2; the random
    fuzz is still open).  In-process (cli.main), so the corpus stays fast."""
    from recstudio_rsir import cli
    failures = []
    for name, args, words in _bad_inputs(tmp_path):
        out = tmp_path / ('out_' + str(abs(hash(name))))
        if '--output' not in args:
            args = args + ['--output', str(out)]
        if '--epochs' not in args:
            args = args + ['--epochs', '1']
        try:
            rc = cli.main(['-m', 'SASRec', *args, '--quiet'])
        except BaseException as e:                        # noqa: BLE001 - anything escaping is a failure
            failures.append((name, 'raised', repr(e)[:200]))
            continue
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith('error: ')]
        if not (rc == 2 and len(lines) == 1 and all(w in lines[0] for w in words)
                and not (out / 'config.yaml').exists()):
            failures.append((name, rc, err.strip().splitlines()[-1:]))
    assert not failures, failures
