"""The public Python API: SelfImprovingTrainer / run, typed results, callbacks, custom augmenters,
model classes, TensorBoard logs, and the same one-line errors as the command line."""
import json
import os

import numpy as np
import pytest

import recstudio_rsir as R
from recstudio_rsir.errors import UserError

TINY = {'epochs': 2, 'patience': 2, 'batch_size': 128, 'num_negatives': 32, 'model.embed_dim': 16,
        'model.hidden_size': 32, 'model.layer_num': 1, 'rsir.m': 2, 'num_threads': 1}


def test_trainer_fit_gives_typed_rounds_models_and_synthetic_rows(small_file, tmp_path):
    seen = []
    out = tmp_path / 'run'
    trainer = R.SelfImprovingTrainer('SASRec', small_file, config_dict=dict(TINY, **{'rsir.rounds': 1}),
                                     output=str(out), progress=False, callbacks=[seen.append])
    res = trainer.fit()
    assert isinstance(res, R.RunResult) and res.augment == 'rsir'      # the trainer's default augmenter
    assert [r.round for r in res.rounds] == [0, 1] and [r.round for r in seen] == [0, 1]
    assert all(isinstance(r, R.RoundResult) for r in seen)
    on_disk = json.load(open(out / 'results.json'))
    from recstudio_rsir.atomic import _jsonable
    assert on_disk == json.loads(json.dumps(res.to_dict(), default=_jsonable))   # results.json is the record
    assert R.RunResult.load(str(out / 'results.json')).to_dict() == on_disk
    # each round records what trained it, in metrics.json and in results.json's rounds
    import torch
    for r in res.rounds:
        env = json.load(open(out / f'round_{r.round}' / 'metrics.json'))['environment']
        assert r.environment == on_disk['rounds'][r.round]['environment'] == env
        assert env['torch'] == torch.__version__ and env['rsir'] == R.__version__ and env['device'] == 'cpu'
        assert env['threads'] == 1 and env['gpu'] is None and env['recstudio'].split()[0] == R.host.flavour()
    old = dict(on_disk['rounds'][0])
    del old['environment']                                  # a results.json of an earlier version
    assert R.RoundResult.from_dict(old).environment is None
    r1 = res.rounds[1]
    rows = r1.synthetic()
    assert len(rows) == r1.generation['kept'] > 0
    assert r1.train_sequences == res.rounds[0].train_sequences + len(rows)
    assert r1.stats()['synthetic_sequences'] == len(rows)
    # the model of a round carries exactly the weights of that round's best checkpoint
    m = r1.model()
    best = torch.load(out / 'round_1' / 'model' / 'best.pt', weights_only=False)['model']
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in best.items())
    assert not m.training
    # a second fit resumes: nothing retrained, same record; callbacks fire for loaded rounds too
    again = R.SelfImprovingTrainer('SASRec', small_file, config_dict=dict(TINY, **{'rsir.rounds': 1}),
                                   output=str(out), progress=False).fit()
    assert [r.test for r in again.rounds] == [r.test for r in res.rounds]
    assert [r.train_sequences for r in again.rounds] == [r.train_sequences for r in res.rounds]


def test_api_matches_command_line(small_file, tmp_path):
    """The command line is a thin caller of the API: same config, same results."""
    from recstudio_rsir import cli
    flags = []
    for k, v in TINY.items():
        flags += [f'--{k}', str(v)]
    assert cli.main(['-m', 'SASRec', '-d', small_file, '--augment', 'none', '--output', str(tmp_path / 'cli'),
                     '--quiet', *flags]) == 0
    res = R.run('SASRec', small_file, dict(TINY), augment='none', output=str(tmp_path / 'api'), progress=False)
    cli_res = json.load(open(tmp_path / 'cli' / 'results.json'))
    for m in ('ndcg@10', 'recall@20'):
        assert cli_res['rounds'][0][m] == res.rounds[0].test[m]


def test_config_layers_files_dict_and_keywords(tmp_path):
    a, b = tmp_path / 'a.yaml', tmp_path / 'b.yaml'
    a.write_text('train: {epochs: 7, patience: 3}\nrsir: {tau: 5}\n')
    b.write_text('train: {epochs: 9}\n')
    cfg = R.resolve_config('SASRec', 'embedded', {'rsir': {'m': 3}, 'rsir.p': 0.25}, [str(a), str(b)],
                           augment='reorder')
    assert (cfg['train']['epochs'], cfg['train']['patience']) == (9, 3)        # later file wins
    assert (cfg['rsir']['tau'], cfg['rsir']['m'], cfg['rsir']['p']) == (5, 3, 0.25)
    assert cfg['augment'] == 'reorder'


@pytest.mark.parametrize('kwargs, message', [
    ({'config_dict': {'rsir': {'tau': 0}}}, 'rsir.tau'),
    ({'config_dict': {'train': {'epochz': 3}}}, 'unknown option train.epochz'),
    ({'config_dict': {'model.no_such_option': 1}}, 'unknown option for SASRec'),
    ({'augment': 'nope'}, 'augment'),
    ({'config_dict': {'rsir.teacher': 'NoSuchModel'}}, 'rsir.teacher'),
    ({'model': 'NoSuchModel'}, 'unknown model'),
    ({'config_file_list': ['/no/such.yaml']}, 'no such file'),
])
def test_api_raises_the_command_lines_one_line_errors(small_file, tmp_path, kwargs, message):
    kwargs = dict({'model': 'SASRec', 'dataset': small_file, 'output': str(tmp_path / 'o')}, **kwargs)
    with pytest.raises(UserError, match=message) as e:
        R.SelfImprovingTrainer(progress=False, **kwargs)
    assert '\n' not in str(e.value)
    assert not (tmp_path / 'o').exists()                    # nothing written before the checks


class TailCopy(R.Augmenter):
    """Test augmenter: every source row without its first item."""
    name = 'tailcopy_test'
    uses_model = False

    def augment(self, ctx):
        rows = [s[1:] for s in ctx.sources]
        return R.AugmentOutput(rows=rows, origin=list(range(len(rows))), info={'note': 'test'})


def test_custom_augmenter_runs_through_the_same_loop(small_file, tmp_path):
    R.register_augmenter(TailCopy, overwrite=True)
    assert 'tailcopy_test' in R.augmenter_names()
    res = R.run('SASRec', small_file, dict(TINY, **{'rsir.rounds': 1, 'rsir.min_len': 3}), augment='tailcopy_test',
                output=str(tmp_path / 'c'), progress=False)
    from recstudio_rsir.data import read_sequence_file
    real = [[int(i) for i, _ in s] for s in read_sequence_file(small_file).values()]
    gen = res.rounds[1].generation
    # the loop's filter ran: rows shorter than min_len and duplicates were dropped and counted
    assert gen['note'] == 'test' and gen['trajectories'] == len(real)
    assert gen['kept'] + gen['dropped_short'] + gen['dropped_duplicate'] == len(real)
    assert gen['dropped_short'] > 0
    rows = res.rounds[1].synthetic()
    assert rows and all(len(r) >= 3 for r in rows) and len({tuple(r) for r in rows}) == len(rows)
    assert 'diagnostics' in gen and os.path.exists(tmp_path / 'c' / 'round_1' / 'train_stats.json')


def test_broken_augmenter_is_a_one_line_error(small_file, tmp_path):
    class Bad(R.Augmenter):
        name = 'bad_test'
        uses_model = False

        def augment(self, ctx):
            return R.AugmentOutput(rows=[[ctx.num_items + 5]], origin=[0])
    R.register_augmenter(Bad, overwrite=True)
    with pytest.raises(UserError, match='bad_test.*outside'):
        R.run('SASRec', small_file, dict(TINY, **{'rsir.rounds': 1}), augment='bad_test',
              output=str(tmp_path / 'b'), progress=False)
    with pytest.raises(UserError, match='is taken'):
        R.register_augmenter(TailCopy, name='rsir')


def test_model_class_is_accepted(small_file, tmp_path):
    from recstudio_rsir import host
    host.apply_shims()
    from recstudio.model.seq.sasrec import SASRec

    class MySASRec(SASRec):
        pass
    res = R.run(MySASRec, small_file, dict(TINY), augment='none', output=str(tmp_path / 'm'), progress=False)
    assert res.model == 'MySASRec' and res.rounds[0].test['ndcg@10'] >= 0


def test_tensorboard_logs_every_epoch_of_every_round(small_file, tmp_path):
    out = tmp_path / 'tb'
    R.run('SASRec', small_file, dict(TINY, **{'rsir.rounds': 1}), output=str(out), progress=False)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    for k in (0, 1):
        hist = json.load(open(out / f'round_{k}' / 'metrics.json'))['history']
        acc = EventAccumulator(str(out / 'tensorboard' / f'round_{k}'))
        acc.Reload()
        loss = [e.value for e in acc.Scalars('train/loss')]
        assert np.allclose(loss, [h['loss'] for h in hist], rtol=1e-6)
        assert len(acc.Scalars('val/ndcg@20')) == len(hist)
