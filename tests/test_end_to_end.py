"""The whole loop from the command line: plain, RSIR, and kill-and-resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from recstudio_rsir.records import RunLayout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--epochs', '3', '--patience', '3', '--batch_size', '128', '--num_negatives', '32',
        '--model.embed_dim', '16', '--model.hidden_size', '32', '--model.layer_num', '1', '--num_threads', '1',
        '--rsir.m', '2', '--quiet']


def _cmd(data, out, *extra):
    return [sys.executable, 'run_recstudio.py', '-m', 'SASRec', '-d', data, '--output', str(out), *TINY, *extra]


def test_rsir_two_rounds_writes_evidence(small_file, tmp_path):
    out = tmp_path / 'run'
    r = subprocess.run(_cmd(small_file, out, '--augment', 'rsir', '--rsir.rounds', '2'), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'NDCG@10' in r.stdout and 'pop' in r.stdout
    res = json.load(open(out / 'results.json'))
    assert [row['round'] for row in res['rounds']] == [0, 1, 2]
    for k in (1, 2):
        gen = json.load(open(out / f'round_{k}' / 'generation.json'))
        assert gen['kept'] > 0 and gen['trajectories'] > 0
        assert res['rounds'][k]['train_sequences'] > res['rounds'][k - 1]['train_sequences']
        assert os.path.exists(out / f'round_{k}' / 'synthetic.npz')
    for k in (0, 1, 2):
        m = json.load(open(out / f'round_{k}' / 'metrics.json'))
        assert 0 <= m['test']['ndcg@10'] <= 1
        assert m['checkpoint_in_round'] == os.path.join('model', 'best.pt')   # relative: folders can move
        assert os.path.exists(out / f'round_{k}' / m['checkpoint_in_round'])
        assert os.path.samefile(RunLayout(str(out)).best_checkpoint(k), out / f'round_{k}' / m['checkpoint_in_round'])
        # validation and test sets never change across rounds
        assert m['test']['users'] == json.load(open(out / 'round_0' / 'metrics.json'))['test']['users']
    assert not [f for f in os.listdir(out) if f.endswith('.tmp')]


def test_kill_and_resume_gives_same_numbers(small_file, tmp_path):
    ref, killed = tmp_path / 'ref', tmp_path / 'killed'
    args = ('--augment', 'rsir', '--rsir.rounds', '1', '--epochs', '4', '--patience', '4')
    r = subprocess.run(_cmd(small_file, ref, *args), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # kill in the middle of round 1's training (after its first epoch checkpoint)
    p = subprocess.Popen(_cmd(small_file, killed, *args), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    state = killed / 'round_1' / 'model' / 'train_state.pt'
    t0 = time.time()
    while not state.exists() and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    assert p.poll() is None, 'the run finished before it could be killed'
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (killed / 'results.json').exists()
    r = subprocess.run(_cmd(small_file, killed, *args), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    a = json.load(open(ref / 'results.json'))
    b = json.load(open(killed / 'results.json'))
    for ra, rb in zip(a['rounds'], b['rounds']):
        for m in ('ndcg@10', 'ndcg@20', 'recall@10', 'recall@20', 'train_sequences', 'interactions'):
            assert ra[m] == rb[m], (m, ra[m], rb[m])
    gen_a = open(ref / 'round_1' / 'synthetic.npz', 'rb').read()
    gen_b = open(killed / 'round_1' / 'synthetic.npz', 'rb').read()
    assert gen_a == gen_b


HSTU_TINY = ['--epochs', '2', '--patience', '2', '--batch_size', '128', '--num_negatives', '32',
             '--model.embed_dim', '16', '--model.num_blocks', '1', '--num_threads', '1', '--rsir.m', '2', '--quiet']


def test_teacher_generates_and_student_trains(small_file, tmp_path):
    """Weak-to-strong: SASRec generates, HSTU trains; a saved teacher checkpoint reproduces the data."""
    out = tmp_path / 'w2s'
    base = [sys.executable, 'run_recstudio.py', '-m', 'HSTU', '-d', small_file, *HSTU_TINY, '--augment', 'rsir']
    r = subprocess.run(base + ['--output', str(out), '--rsir.teacher', 'SASRec'], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    t = json.load(open(out / 'round_0' / 'teacher' / 'metrics.json'))
    s = json.load(open(out / 'round_0' / 'metrics.json'))
    assert (t['model'], s['model']) == ('SASRec', 'HSTU')
    assert json.load(open(out / 'round_1' / 'generation.json'))['generator'] == 'SASRec'
    rounds = json.load(open(out / 'results.json'))['rounds']
    assert rounds[1]['train_sequences'] > rounds[0]['train_sequences']
    # the same teacher, given as a checkpoint, generates exactly the same round-1 data
    out2 = tmp_path / 'ckpt'
    teacher_ckpt = str(out / 'round_0' / 'teacher' / t['checkpoint_in_round'])
    r = subprocess.run(base + ['--output', str(out2), '--rsir.teacher', 'SASRec', '--rsir.teacher_ckpt', teacher_ckpt],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out2 / 'round_0' / 'teacher').exists()
    assert open(out / 'round_1' / 'synthetic.npz', 'rb').read() == open(out2 / 'round_1' / 'synthetic.npz', 'rb').read()


@pytest.mark.parametrize('flag,value,expect', [
    ('--rsir.teacher', 'NoSuchModel', '--rsir.teacher NoSuchModel'),
    ('--rsir.teacher_ckpt', '/nonexistent/best.pt', '--rsir.teacher_ckpt /nonexistent/best.pt'),
])
def test_bad_teacher_is_a_one_line_error(small_file, tmp_path, flag, value, expect):
    r = subprocess.run([sys.executable, 'run_recstudio.py', '-m', 'SASRec', '-d', small_file, *TINY,
                        '--augment', 'rsir', flag, value, '--output', str(tmp_path / 'bad')], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and expect in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / 'bad' / 'round_0' / 'metrics.json').exists()


def test_cl4srec_trains_and_evaluates_from_the_command_line(small_file, tmp_path):
    out = tmp_path / 'cl'
    r = subprocess.run([sys.executable, 'run_recstudio.py', '-m', 'CL4SRec', '-d', small_file, '--epochs', '1',
                        '--batch_size', '128', '--num_negatives', '32', '--model.embed_dim', '16',
                        '--model.layer_num', '1', '--num_threads', '1', '--quiet', '--output', str(out),
                        '--augment', 'rsir', '--rsir.rounds', '1', '--rsir.m', '2'],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.load(open(out / 'round_0' / 'metrics.json'))
    assert m['model'] == 'CL4SRec' and 0 <= m['test']['ndcg@10'] <= 1 and m['train']['epochs_run'] == 1
    gen = json.load(open(out / 'round_1' / 'generation.json'))       # CL4SRec generated round 1's rows
    assert gen['generator'] == 'CL4SRec' and gen['kept'] > 0
    assert 'aux_loss' in m['history'][0]                              # the contrastive term was trained


def test_plateau_hint_only_below_the_popularity_ratio():
    from recstudio_rsir.algorithm.loop import PLATEAU_RATIO, plateau_hint
    pop = {'ndcg@20': 0.0120}
    res = {'val': {'ndcg@20': 0.0125}, 'train': {'best_epoch': 4, 'epochs_run': 15}}
    hint = plateau_hint(0, res, pop)
    assert hint.startswith('round 0: validation NDCG@20 0.0125') and '(0.0120)' in hint
    assert 'best epoch 4 of 15' in hint and 'train.patience' in hint and hint.count('\n') == 0
    res['val']['ndcg@20'] = PLATEAU_RATIO * 0.0120 + 1e-6                   # a model that learnt something
    assert plateau_hint(0, res, pop) is None
    assert plateau_hint(1, {'val': {'ndcg@20': 0.0}}, {'ndcg@20': 0.0}) is None   # nothing to compare with


def test_a_model_left_at_popularity_level_gets_the_plateau_hint(small_file, tmp_path):
    """A model that cannot learn (learning rate 1e-9) ends below popularity: the run still finishes,
    and says once per round on stderr that training may have stopped on a plateau."""
    out = tmp_path / 'run'
    r = subprocess.run(_cmd(small_file, out, '--augment', 'none', '--learning_rate', '1e-9'), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [x for x in r.stderr.splitlines() if 'early plateau' in x]
    assert len(lines) == 1 and lines[0].startswith('round 0: validation NDCG@20'), r.stderr[-2000:]
    res = json.load(open(out / 'results.json'))
    assert res['rounds'][0]['val']['ndcg@20'] < res['popularity']['val']['ndcg@20']


def test_output_folder_of_another_config_is_refused(small_file, tmp_path):
    out = tmp_path / 'run'
    r = subprocess.run(_cmd(small_file, out, '--epochs', '1'), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    before = (out / 'config.yaml').read_text()
    r = subprocess.run(_cmd(small_file, out, '--epochs', '1', '--seed', '7'), cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 2 and r.stderr.count('\n') == 1
    assert 'train.seed = 2022, not 7' in r.stderr and 'another --output' in r.stderr
    assert (out / 'config.yaml').read_text() == before
    # more rounds of the same run continue in the same folder
    r = subprocess.run(_cmd(small_file, out, '--epochs', '1', '--augment', 'none', '--rsir.rounds', '3'), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def test_output_folder_from_before_an_option_existed_still_resumes(tmp_path):
    """A run folder written before an option was added counts as having used its default."""
    import yaml
    from recstudio_rsir import config as C
    from recstudio_rsir.algorithm import loop
    cfg = C.resolve(top={'dataset': 'embedded', 'output': str(tmp_path)})
    old = yaml.safe_load(C.dump(cfg))
    del old['aug']
    del old['rsir']['teacher_model']
    (tmp_path / 'config.yaml').write_text(yaml.safe_dump(old))
    loop.check_output_folder(cfg, str(tmp_path))                    # no error
    cfg['aug']['copies'] = 2
    with pytest.raises(Exception, match='aug.copies = 1, not 2'):
        loop.check_output_folder(cfg, str(tmp_path))


def test_moved_folder_and_previous_versions_folder_resume(small_file, tmp_path):
    """A run folder resumes after a move (checkpoints are relative), and a folder written by the
    previous version (absolute/cwd-relative `checkpoint`, no `plugins` key) still resumes."""
    import shutil
    import yaml
    out = tmp_path / 'orig'
    args = ('--augment', 'rsir', '--rsir.rounds', '1')
    r = subprocess.run(_cmd(small_file, out, *args), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    ref = json.load(open(out / 'results.json'))['rounds']
    moved = tmp_path / 'moved'
    shutil.move(str(out), str(moved))
    os.remove(moved / 'results.json')
    stamps = {k: os.stat(moved / f'round_{k}' / 'model' / 'train_state.pt').st_mtime_ns for k in (0, 1)}
    r = subprocess.run(_cmd(small_file, moved, *args), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert stamps == {k: os.stat(moved / f'round_{k}' / 'model' / 'train_state.pt').st_mtime_ns for k in (0, 1)}
    assert [x['ndcg@10'] for x in json.load(open(moved / 'results.json'))['rounds']] == [x['ndcg@10'] for x in ref]
    # the previous version's format
    for k in (0, 1):
        p = moved / f'round_{k}' / 'metrics.json'
        m = json.load(open(p))
        m['checkpoint'] = str(moved / f'round_{k}' / m.pop('checkpoint_in_round'))
        json.dump(m, open(p, 'w'))
    cfg = yaml.safe_load(open(moved / 'config.yaml'))
    cfg.pop('plugins')
    yaml.safe_dump(cfg, open(moved / 'config.yaml', 'w'))
    os.remove(moved / 'results.json')
    r = subprocess.run(_cmd(small_file, moved, *args, '--rsir.rounds', '2'), cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rounds = json.load(open(moved / 'results.json'))['rounds']
    assert [x['ndcg@10'] for x in rounds[:2]] == [x['ndcg@10'] for x in ref] and len(rounds) == 3
