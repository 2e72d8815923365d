"""A run's split.json: exactly which images were in train / val / test. evaluate, report and resume use it, and
stop, saying what changed, when the data is no longer the data the run was trained on."""
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import cnnkit
from cnnkit.api import evaluate, resume
from cnnkit.cli import main
from cnnkit.data import load_data
from cnnkit.data.dataset import MANIFEST_FORMAT
from cnnkit.errors import CnnkitError
from cnnkit.run import Predictor, load_run_data


def _train(spec, out: Path, **options) -> Path:
    options = {"epochs": 2, **options}
    return Path(cnnkit.train(str(spec), out=str(out), quiet=True, report=False, **options)["run_dir"])


def _files(root: Path, split: str) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / split).rglob("*.png"))


def _flat(png_folder: Path, dest: Path) -> Path:
    """png_folder's training images as one folder of class sub-folders (no validation split of its own)."""
    for cls in ("sneaker", "trouser", "tshirt"):
        shutil.copytree(png_folder / "train" / cls, dest / cls)
    return dest


def test_split_json_lists_exactly_the_folder_splits(png_folder, tmp_path):
    for f in sorted((png_folder / "val").rglob("*.png"))[::3]:
        (png_folder / "test" / f.parent.name).mkdir(parents=True, exist_ok=True)
        f.rename(png_folder / "test" / f.parent.name / f.name)
    run = _train(png_folder, tmp_path / "run", epochs=1)
    m = json.loads((run / "split.json").read_text())
    assert m["format"] == MANIFEST_FORMAT and m["classes"] == ["sneaker", "trouser", "tshirt"]
    assert m["source"]["kind"] == "folder" and m["source"]["root"] == str(png_folder.resolve())
    assert set(m["splits"]) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        assert m["splits"][split] == {split: _files(png_folder, split)}
    assert (len(m["splits"]["val"]["val"]), len(m["splits"]["test"]["test"])) == (24, 12)
    every = [k for s in m["splits"].values() for ks in s.values() for k in ks]
    assert sorted(m["files"]) == sorted(every) and len(every) == 180
    st = os.stat(png_folder / "val" / "trouser" / "005.png")
    size, mtime, digest = m["files"]["val/trouser/005.png"]
    assert [size, mtime] == [st.st_size, st.st_mtime_ns]
    import hashlib
    assert digest == hashlib.blake2b((png_folder / "val/trouser/005.png").read_bytes(), digest_size=16).hexdigest()
    assert "val_fraction" not in m and m["skipped"] == []


def test_split_json_of_a_folder_split_by_the_seed(png_folder, tmp_path):
    flat = _flat(png_folder, tmp_path / "flat")
    run = _train(flat, tmp_path / "run", epochs=1, seed=5, val_fraction=0.25)
    m = json.loads((run / "split.json").read_text())
    assert m["val_fraction"] == 0.25 and m["split_seed"] == 5 and set(m["splits"]) == {"train", "val"}
    train, val = m["splits"]["train"]["train"], m["splits"]["val"]["train"]  # both cut from the one folder
    assert len(val) == 36 and sorted(train + val) == sorted(p.relative_to(flat).as_posix()
                                                            for p in flat.rglob("*.png"))
    assert val == load_data(str(flat), seed=5, val_fraction=0.25).val.keys
    assert val != load_data(str(flat), seed=0, val_fraction=0.25).val.keys  # so the seed is what chose them


def test_split_json_of_digits(tmp_path):
    run = _train("digits", tmp_path / "run", epochs=1)
    m = json.loads((run / "split.json").read_text())
    train, val = m["splits"]["train"]["train"], m["splits"]["val"]["train"]
    assert (len(train), len(val)) == (1437, 360) and sorted(train + val) == list(range(1797))
    assert val == load_data("digits").val.keys and m["split_seed"] == 0
    assert set(m["source"]["fingerprints"]) == {"train"} and "files" not in m


def test_evaluate_and_report_use_the_saved_split(png_folder, tmp_path, capsys):
    flat = _flat(png_folder, tmp_path / "flat")
    result = cnnkit.train(str(flat), epochs=3, seed=5, val_fraction=0.25, out=str(tmp_path / "run"), quiet=True,
                          report=False)
    run = Path(result["run_dir"])
    saved = json.loads((run / "split.json").read_text())["splits"]
    rep = evaluate(run, plot=False)
    assert rep["split"] == "val" and rep["n"] == 36 and rep["images"] == "val 36 (the run's saved split)"
    assert abs(rep["accuracy"] - result["val_acc"]) < 1e-4  # the same 36 images the trainer validated on
    ds = load_run_data(Predictor.from_run(run))
    assert ds.val.keys == saved["val"]["train"] and ds.train.keys == saved["train"]["train"]
    assert evaluate(run, split="train", plot=False)["n"] == 108
    assert evaluate(run, split="all", plot=False)["n"] == 144
    code = main(["report", str(run), "--json"])
    info = json.loads(capsys.readouterr().out)
    assert code == 0 and info["split"] == "val" and abs(info["val_accuracy"] - result["val_acc"]) < 1e-4


def _change(folder: Path, how: str) -> str:
    """Change one training image of a folder as a user might; returns its key."""
    target = folder / "train" / "sneaker" / "007.png"
    if how == "missing":
        target.unlink()
    elif how == "new":
        target = folder / "train" / "sneaker" / "new.png"
        shutil.copy(folder / "train" / "tshirt" / "007.png", target)
    else:  # modified: other pixels (another file size), a later time
        size = target.stat().st_size
        Image.open(folder / "train" / "trouser" / "007.png").save(target)
        assert target.stat().st_size != size
        t = target.stat().st_mtime_ns + 3_000_000_000
        os.utime(target, ns=(t, t))
    return target.relative_to(folder).as_posix()


@pytest.mark.parametrize("how", ["missing", "new", "modified"])
def test_a_changed_folder_stops_evaluate_report_and_resume(png_folder, tmp_path, capsys, how):
    run = _train(png_folder, tmp_path / "run", epochs=1)
    before = evaluate(run, plot=False)
    assert before["n"] == 36
    key = _change(png_folder, how)
    with pytest.raises(CnnkitError) as e:
        evaluate(run, plot=False)
    msg = str(e.value)
    assert f"1 {how} " in msg and key in msg and "\n" not in msg
    assert "the data (or the run's split.json) changed since the run was trained" in msg and "--split all" in msg
    for other in ("missing", "new", "modified"):
        if other != how:
            assert f"1 {other}" not in msg and f"{other} (" not in msg
    for argv in (["evaluate", str(run)], ["report", str(run)]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("cnnkit: error: the data (or the run's split.json) changed") and len(err.strip().splitlines()) == 1
        assert f"1 {how}" in err
    with pytest.raises(CnnkitError, match=f"1 {how}"):
        resume(run, epochs=2, quiet=True)
    code = main(["train", "--resume", str(run), "--epochs", "2"])
    err = capsys.readouterr().err
    assert code == 2 and f"1 {how}" in err and len(err.strip().splitlines()) == 1
    assert torch.load(run / "train_state.pt", weights_only=True)["epoch"] == 1  # nothing trained on the new data


def test_evaluate_other_data_scores_all_of_it_and_says_which(png_folder, tmp_path):
    run = _train(png_folder, tmp_path / "run")
    other = tmp_path / "other"
    for cls in ("sneaker", "trouser", "tshirt"):
        shutil.copytree(png_folder / "val" / cls, other / cls)
    files = sorted(other.rglob("*.png"))
    _change(png_folder, "missing")  # the run's own data changing does not matter to other data
    rep = evaluate(run, data=str(other), split="all", plot=False)
    assert rep["split"] == "all" and rep["n"] == 36 and rep["data"] == f"folder:{other}"
    m = re.fullmatch(r"train (\d+), val (\d+) \(the data's own splits\)", rep["images"])
    assert m and int(m[1]) + int(m[2]) == 36
    pred = Predictor.from_run(run)
    probs = pred.predict_proba([str(f) for f in files])
    labels = torch.tensor([pred.classes.index(f.parent.name) for f in files])
    assert abs(rep["accuracy"] - (probs.argmax(1) == labels).float().mean().item()) < 1e-4  # (4 decimals)
    assert evaluate(run, data=str(other), plot=False)["split"] == "all"  # the default without a test split
    (other / "test").mkdir()  # now other data with a test/ folder: that is the default
    for cls in ("sneaker", "trouser", "tshirt"):
        shutil.copytree(other / cls, other / "test" / cls)
        shutil.move(str(other / cls), str(other / "train" / cls))
    rep = evaluate(run, data=str(other), plot=False)
    assert rep["split"] == "test" and rep["n"] == 36 and rep["images"] == "test 36 (the data's own splits)"


def test_resume_uses_the_saved_split(png_folder, tmp_path):
    flat = _flat(png_folder, tmp_path / "flat")
    run = _train(flat, tmp_path / "run", epochs=2, seed=2, val_fraction=0.25)
    split = (run / "split.json").read_bytes()
    r = resume(run, epochs=3, quiet=True)
    assert r["epochs"] == 3 and (run / "split.json").read_bytes() == split
    assert json.loads((run / "model.json").read_text())["data"]["sizes"] == {"train": 108, "val": 36}
    moved = tmp_path / "moved"
    shutil.copytree(flat, moved, copy_function=shutil.copy)  # new modification times; keys are relative
    shutil.rmtree(flat)
    r = resume(run, data=str(moved), epochs=4, quiet=True)
    assert r["epochs"] == 4 and r["data"] == f"folder:{moved}"
    shutil.copy(moved / "tshirt" / "003.png", moved / "sneaker" / "extra.png")  # a re-split would take it in
    with pytest.raises(CnnkitError, match=r"1 new \(sneaker/extra\.png\)"):
        resume(run, data=str(moved), epochs=5, quiet=True)
    assert torch.load(run / "train_state.pt", weights_only=True)["epoch"] == 4


def test_a_run_too_short_for_a_schedule_can_be_extended(tmp_path):
    run = _train("digits", tmp_path / "run", epochs=1, batch_size=512)  # 3 steps: a constant learning rate
    assert resume(run, epochs=2, quiet=True)["epochs"] == 2


def test_an_image_edited_at_the_same_size_is_modified(png_folder, tmp_path):
    bmp = tmp_path / "bmp"
    for f in png_folder.rglob("*.png"):
        dest = bmp / f.relative_to(png_folder).with_suffix(".bmp")
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.open(f).save(dest)
    run = _train(bmp, tmp_path / "run", epochs=1)
    target = bmp / "train" / "sneaker" / "007.bmp"
    size = target.stat().st_size
    Image.open(bmp / "train" / "trouser" / "007.bmp").save(target)  # a trouser where a sneaker was
    assert target.stat().st_size == size
    with pytest.raises(CnnkitError, match=r"1 modified \(train/sneaker/007\.bmp\)"):
        evaluate(run, plot=False)


def test_a_damaged_split_json_is_one_line(png_folder, tmp_path, capsys):
    run = _train(png_folder, tmp_path / "run", epochs=1)
    (run / "split.json").write_text('{"format": "cnnkit-split/1", "splits": ')
    code = main(["evaluate", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "split.json is not valid JSON" in err and len(err.strip().splitlines()) == 1
    (run / "split.json").write_text(json.dumps({"format": "cnnkit-split/0", "splits": {}}))
    with pytest.raises(CnnkitError, match="split.json is not a cnnkit-split/1 file"):
        evaluate(run, plot=False)


def test_a_split_json_listing_an_image_twice_is_damaged_not_changed_data(tmp_path):
    """Found by the independent re-try: an image in both splits was blamed on the data."""
    import json

    import cnnkit
    from cnnkit.errors import CnnkitError

    run = cnnkit.train("digits", epochs=1, img_size=8, out=str(tmp_path / "r"), quiet=True, report=False)["run_dir"]
    path = tmp_path / "r" / "split.json"
    m = json.loads(path.read_text())
    splits = m["splits"]
    val = next(iter(splits["val"].values()))
    next(iter(splits["train"].values())).append(val[0])
    path.write_text(json.dumps(m))
    with pytest.raises(CnnkitError, match="split.json is damaged: it lists .* twice"):
        cnnkit.evaluate(run, plot=False)
