"""Shipped files are found from an installed share folder, whatever the working directory."""
from xmodal_compress_ros.ros.package_files import find_package_file, resolve_model_stem


def test_a_relative_model_stem_falls_back_to_the_installed_share_folder(tmp_path, monkeypatch):
    share = tmp_path / 'install' / 'share' / 'xmodal_compress_ros'
    (share / 'models').mkdir(parents=True)
    (share / 'models' / 'only-installed.safetensors').write_bytes(b'')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path / 'install'))
    monkeypatch.chdir(tmp_path)
    assert resolve_model_stem('models/only-installed') == str(share / 'models' / 'only-installed')
    # Found from the working directory, absolute, or nowhere: left as given.
    (tmp_path / 'models').mkdir()
    (tmp_path / 'models' / 'local.safetensors').write_bytes(b'')
    assert resolve_model_stem('models/local') == 'models/local'
    assert resolve_model_stem('/abs/model') == '/abs/model'
    assert resolve_model_stem('models/missing') == 'models/missing'


def test_the_checkout_ships_the_fast_dds_profile():
    assert find_package_file('config/fastdds_large_data.xml').is_file()
