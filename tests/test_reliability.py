"""Reliability and security (issue #14): no file a user can hand in is unpickled, every bad input is
one line (hand-written corpus and random fuzz), a damaged run folder gives identical results or one
line, kills resume to identical results, a failed start does not block the corrected command, one
writer per run folder.  The cases live in benchmarks/reliability.py, which runs the full version."""
import functools
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import reliability as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# run_recstudio.py -m SASRec -d DATA --output OUT, tiny settings, then EXTRA
_run = functools.partial(R.run_cli, timeout=600)


def _one_line_error(r, *words):
    why = R.error_line(r.returncode, r.stderr, words)      # exit 2, one `error:` line (the last), no traceback
    assert why is None, why


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


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """The benchmark's reference: a finished 2-round RSIR run on its tiny dataset."""
    work = str(tmp_path_factory.mktemp('relbench'))
    data = R.tiny_dataset(work)
    return R.finished_run(work, data), data, work


@pytest.mark.parametrize('name', [n for n, _ in R.malicious_cases()])
def test_malicious_file_is_refused_and_never_runs(reference, name):
    """Every place a file is loaded from, with a pickle payload (records edited to match where the
    run folder records sizes and hashes): one line, payload never run."""
    ref, data, work = reference
    plant = dict(R.malicious_cases())[name]
    outcome, why = R.try_malicious(name, plant, ref, data, work)
    assert outcome == 'refused, not run', why


@pytest.mark.parametrize('name', [c[0] for c in R.damage_cases()])
def test_damaged_run_folder_gives_identical_results_or_one_line(reference, name):
    ref, data, work = reference
    _, damage, expect = next(c for c in R.damage_cases() if c[0] == name)
    outcome, why = R.try_damage(name, damage, expect, ref, data, work)
    assert outcome == ('identical' if expect == 'identical' else 'one line'), why


def test_kill_soak_small(reference):
    """Two SIGKILLs at random moments of a 3-round run: the resumed run is identical to an
    uninterrupted one (the benchmark does 20+)."""
    import random
    _, data, work = reference
    landed, identical, compared, failures, _ = R.kill_soak(data, work, 2, random.Random(7))
    assert landed == 2 and identical == 2 and compared >= 1 and failures == [], failures


def test_synthetic_rows_are_never_unpickled(tmp_path):
    from recstudio_rsir.algorithm.loop import load_sequences
    from recstudio_rsir.errors import UserError
    p = tmp_path / 'synthetic.npz'
    marker = tmp_path / 'pwned'
    np.savez(p, items=np.array([R.Payload(str(marker))], dtype=object), offsets=np.array([0, 1]))
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


def test_bad_inputs_are_one_line_each(tmp_path):
    """The benchmark's hand-written corpus of bad files and option values: every one is a single
    `error:` line naming the file or option, exit 2, nothing escaping the command line, and no run
    folder left behind.  In-process (cli.main), so the corpus stays fast."""
    outs = [R.try_input(n, args, w, str(tmp_path)) for n, args, w in R.bad_input_cases(str(tmp_path))]
    assert [d for o, d in outs if o != 'one line'] == []


def test_random_fuzz_is_one_line_or_accepted(tmp_path):
    """Random bytes, a .gz cut at random offsets, wrong encodings, random values for every option as
    flags and in YAML: each case either runs to the end or is one `error:` line (the benchmark runs
    hundreds; RSIR_FUZZ_SEED picks another draw)."""
    import random
    seed = int(os.environ.get('RSIR_FUZZ_SEED', '2026'))
    cases = R.fuzz_cases(str(tmp_path), 40, random.Random(seed))
    outs = [R.try_input(n, args, [], str(tmp_path), accept_ok=kind in ('flag', 'yaml')) for n, args, kind in cases]
    assert [d for o, d in outs if o == 'FAILED'] == [], f'fuzz seed {seed}'
    assert {o for o, _ in outs} == {'one line', 'accepted'}       # both kinds of outcome were exercised
