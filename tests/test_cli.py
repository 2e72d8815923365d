import json

import pytest

from cnnkit.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_json_resnet50(capsys):
    code, out, _ = run(capsys, "summary", "resnet50", "--input", "3x224x224", "--json")
    d = json.loads(out)
    assert code == 0 and d["model"] == "resnet50" and d["input"] == [3, 224, 224]
    assert d["total_params"] == d["trainable_params"] == 25_557_032
    assert d["macs"] == 4_089_184_256
    layer4 = [l for l in d["layers"] if l["name"] == "layer4"][0]
    assert layer4["receptive_field"] == 427 and layer4["output_shape"] == [2048, 7, 7]
    assert {"name", "type", "output_shape", "params", "macs", "receptive_field"} <= set(layer4)


def test_summary_table_and_compare_fc(capsys):
    code, out, _ = run(capsys, "summary", "simplecnn", "--input", "3x224x224", "--compare-fc", "1024")
    assert code == 0
    assert "154,141,696" in out and "896" in out


@pytest.mark.parametrize("argv,needle", [
    (["summary", "resnet5"], "Did you mean 'resnet50'"),
    (["summary", "resnet50", "--input", "3x224"], "expected CxHxW"),
    (["summary", "alexnet", "--input", "3x20x20", "--small-input", "no"], "too small for alexnet"),
    (["summary", "simplecnn", "--num-classes", "0"], "--num-classes"),
])
def test_errors_are_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_flag_suggests_the_right_one(capsys):
    assert main(["summary", "simplecnn", "--jsn"]) == 2  # a bad flag is returned as status 2, as other errors are
    err = capsys.readouterr().err
    assert "did you mean '--json'" in err and len(err.strip().splitlines()) == 1
