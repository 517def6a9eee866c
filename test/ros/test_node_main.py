"""The match log line the nodes write, and reading it back."""
from xmodal_compress_ros.ros.node_main import _MATCH_LOG, match_times


def test_match_times_read_back_the_logged_lines_of_one_endpoint():
    log = '\n'.join([
        '[INFO] [1.0] [xmodal_encoder]: ' + _MATCH_LOG.format(what='packet publisher', count=1, ns=100),
        '[INFO] [2.0] [xmodal_decoder]: ' + _MATCH_LOG.format(what='packet subscription', count=1, ns=150),
        '[INFO] [3.0] [xmodal_encoder]: ' + _MATCH_LOG.format(what='packet publisher', count=2, ns=200),
    ])
    assert match_times(log, 'packet publisher') == [100, 200]
    assert match_times(log, 'packet subscription') == [150]
    assert match_times(log, 'packet') == []
