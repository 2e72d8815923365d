"""The CLI as a user runs it: train, evaluate and predict on a folder of real PNGs."""
import json


from cnnkit.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_evaluate_predict_on_a_png_folder(capsys, png_folder, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--data", f"folder:{png_folder}", "--epochs", "6", "--out", run_dir)
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("val_acc=") and float(last.split("=")[1]) >= 0.9  # 3 distinct garments

    code, out, _ = run(capsys, "evaluate", run_dir, "--json")
    rep = json.loads(out)
    assert code == 0 and rep["split"] == "val" and rep["n"] == 36 and rep["accuracy"] >= 0.9
    assert set(rep["per_class"]) == {"sneaker", "trouser", "tshirt"}
    assert len(rep["confusion_matrix"]) == 3 and sum(map(sum, rep["confusion_matrix"])) == 36
    assert (run_dir / "confusion_matrix_val.png").is_file()

    img = png_folder / "val" / "trouser" / "000.png"
    code, out, _ = run(capsys, "predict", run_dir, img, "--top-k", "2", "--json")
    pred = json.loads(out)["predictions"][0]
    assert code == 0 and pred["image"] == str(img) and len(pred["top"]) == 2
    assert pred["top"][0]["class"] == "trouser"
    assert sum(t["probability"] for t in pred["top"]) <= 1.0 + 1e-6

    code, out, _ = run(capsys, "evaluate", run_dir)
    assert "confusion matrix" in out and "macro avg" in out


def test_train_json_and_errors(capsys, tmp_path):
    code, out, err = run(capsys, "train", "--data", "digits", "--epochs", "2", "--out", tmp_path / "r", "--json")
    d = json.loads(out)
    assert code == 0 and {"val_acc", "epochs", "seconds", "run_dir"} <= set(d) and d["epochs"] == 2
    assert "epoch   2/2" in err  # the per-epoch lines go to stderr with --json

    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    code, _, err = run(capsys, "predict", tmp_path / "r", bad)
    assert code == 2 and str(bad) in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "predict", tmp_path / "r", tmp_path / "missing.png")
    assert code == 2 and "missing.png: no such file" in err
    code, _, err = run(capsys, "evaluate", tmp_path / "nope")
    assert code == 2 and "not a run directory" in err
    code, _, err = run(capsys, "train", "--resume", tmp_path / "r", "--model", "lenet5")
    assert code == 2 and "--model" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "train", "--resume", tmp_path / "r", "--epochs", "3", "--json")  # extends the run
    assert code == 0 and json.loads(out)["epochs"] == 3 and "epoch   3/3" in err
    code, _, err = run(capsys, "train", "--data", "digits", "--model", "lenet")
    assert code == 2 and "Did you mean 'lenet5'" in err
