"""The run setup the soak and overload scripts share."""
import argparse

import pytest

pytestmark = pytest.mark.ros


def test_prepare_run_resolves_bag_models_and_node_parameters(tmp_path):
    from harness import node_link_runs, node_load
    from harness.packet_fuzz import write_tiny_models

    bag = node_link_runs.procedural_bag(tmp_path / 'bag', 3, 128, 64, 500)
    stems = write_tiny_models(tmp_path / 'models')
    parser = argparse.ArgumentParser()
    node_load.add_run_arguments(parser, str(tmp_path / 'work'))
    args = parser.parse_args(['--bag', str(bag), '--models', ','.join(stems), '--quality', '1'])
    run = node_load.prepare_run(args)
    assert run.bag == bag and (tmp_path / 'work').is_dir()
    assert run.result['image_size'] == [128, 64] and run.result['model_kind'] == 'given'
    assert run.result['models'] == list(stems)
    assert run.encoder['quality'] == 1 and run.encoder['model'] == stems[0]
    assert list(run.decoder['models']) == list(stems)
