"""DICOM and 16-bit input: real X-rays (pydicom-data's chest and extremity CRs), pydicom's own test files, and
files written here with known values."""
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import cnnkit
from cnnkit.cli import main
from cnnkit.data import dicom, load_data
from cnnkit.data.images import BadImagesError, open_image, read_header
from cnnkit.errors import CnnkitError
from cnnkit.preprocess import Preprocess

STORE = Path(pytest.importorskip("data_store").__file__).parent / "data"  # pydicom-data (MIT)
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def real(name: str, tmp_path: Path, as_name: str) -> Path:
    """A pydicom-data file copied under a neutral name (their names hold their patients' names: RG1, RG3)."""
    out = tmp_path / as_name
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(STORE / name, out)
    return out


def write_dicom(path: Path, stored: np.ndarray, *, photometric="MONOCHROME2", bits=12, slope=None, intercept=None,
                window=None, patient="Anonymous", frames=1) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "OT", patient, "P0001"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(stored.astype("<u2")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_real_chest_xray_reads_as_a_viewer_shows_it(tmp_path):
    chest = real("RG1_UNCI.dcm", tmp_path, "chest.dcm")  # CR, MONOCHROME1, 15 bits, 1841×1955, its own window
    assert read_header(str(chest)) == ("I;16", (1841, 1955))
    im = open_image(chest)
    assert im.mode == "F" and im.size == (1841, 1955)
    shown = np.asarray(im)
    # pydicom's own LUTs, then MONOCHROME1 inverted: the same display values
    ds = pydicom.dcmread(chest)
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    want = 255 - voi / (2 ** 15 - 1) * 255  # the window's output range: 15 bits, unsigned
    np.testing.assert_allclose(shown, want, atol=1e-3)
    # MONOCHROME1: the lungs (air, low attenuation) dark, the spine (bone) bright, as on a light box
    h, w = shown.shape
    lung = shown[int(h * .35):int(h * .55), int(w * .2):int(w * .35)].mean()
    spine = shown[int(h * .35):int(h * .55), int(w * .47):int(w * .53)].mean()
    assert spine > lung + 30
    # the same file as MONOCHROME2 is its mirror image in intensity
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.save_as(tmp_path / "chest_m2.dcm")
    np.testing.assert_allclose(np.asarray(open_image(tmp_path / "chest_m2.dcm")), 255 - shown, atol=1e-3)


def test_jpeg2000_lossless_decodes_to_the_uncompressed_pixels(tmp_path):
    a = Preprocess(1, (224, 224), (0.5,), (0.25,)).load(real("RG3_UNCR.dcm", tmp_path, "leg.dcm"))
    b = Preprocess(1, (224, 224), (0.5,), (0.25,)).load(real("RG3_J2KR.dcm", tmp_path, "leg_j2k.dcm"))
    assert a.shape == (1, 224, 224) and (a == b).all() and a.std() > 20


def test_rescale_window_and_the_window_flag(tmp_path):
    stored = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    f = write_dicom(tmp_path / "ramp.dcm", stored, slope=2.0, intercept=-1000.0, window=(1000, 2001))
    values = 2.0 * stored.astype(np.float64) - 1000.0  # -1000 .. 7190
    shown = np.asarray(open_image(f))
    # DICOM's linear window: below c - w/2 black, above c + w/2 white, linear between
    assert shown[values <= -0.5].max() == 0 and shown[values > 1999.5].min() == 255
    mid = (values > 0) & (values < 1999)
    np.testing.assert_allclose(shown[mid], ((values[mid] - 999.5) / 2000 + 0.5) * 255, atol=1e-3)
    # --window overrides the file's; no window at all: the image's own range
    other = np.asarray(open_image(f, window=(3000, 2001)))
    assert other[values < 1999].max() == 0 and 0 < other[(values > 2500) & (values < 3500)].mean() < 255
    g = write_dicom(tmp_path / "plain.dcm", stored)
    np.testing.assert_allclose(np.asarray(open_image(g)), stored / 4095 * 255, atol=1e-3)


def test_sixteen_bit_png_and_tiff_are_not_squashed(tmp_path):
    """12-bit data in 16-bit files spans black to white: the data set's depth (12 bits) is found once, saved in its
    preprocessing, and used for every image (one scale for all, not each image's own min-max)."""
    ramp = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)  # 12-bit data in a 16-bit file
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        Image.fromarray(ramp).save(tmp_path / "d" / cls / "a.png")
        Image.fromarray(ramp // 2).save(tmp_path / "d" / cls / "a.tif")  # darker: stays darker
    data = load_data(str(tmp_path / "d"), val_fraction=0.5)
    assert data.preprocess.bits == 12 and data.preprocess.to_dict()["bits"] == 12
    p = data.preprocess
    got = p.load(tmp_path / "d" / "a" / "a.png")[0]
    assert got.min() == 0 and got.max() == 255  # the whole range, not 0..16 as v/257 would give
    np.testing.assert_allclose(got, np.rint(ramp / 4095 * 255), atol=1)
    np.testing.assert_allclose(p.load(tmp_path / "d" / "a" / "a.tif")[0], np.rint(ramp // 2 / 4095 * 255), atol=1)
    assert Preprocess(1, (64, 64), (0.5,), (0.25,), window=(2047.5, 4096)).load(tmp_path / "d" / "a" / "a.png").max() == 255


@pytest.mark.parametrize("name,where,reason", [
    ("emri_small.dcm", STORE, "multi-frame DICOM (10 frames)"),
    ("rtplan.dcm", PYDICOM_FILES, "no pixel data (a RTPLAN object"),
    ("MR_small_jpeg_ls_lossless.dcm", PYDICOM_FILES, "JPEG-LS Lossless Image Compression, which no installed plugin"),
    ("MR_truncated.dcm", PYDICOM_FILES, "pixel data cannot be decoded"),
])
def test_unusable_dicoms_are_one_line_each(tmp_path, capsys, name, where, reason):
    f = tmp_path / name
    shutil.copy(where / name, f)
    with pytest.raises(BadImagesError, match=re.escape(reason)):
        open_image(f)
    run = cnnkit.train("digits", epochs=1, out=str(tmp_path / "r"), quiet=True, report=False)["run_dir"] \
        if name == "emri_small.dcm" else None
    if run:  # through the CLI: one line naming the file, no traceback
        assert main(["predict", run, str(f)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and name in err and reason in err and "Traceback" not in err


def test_not_a_dicom_and_a_missing_one(tmp_path):
    (tmp_path / "x.dcm").write_text("hello")
    with pytest.raises(BadImagesError, match="not a DICOM file"):
        open_image(tmp_path / "x.dcm")
    with pytest.raises(BadImagesError, match="no such file"):
        open_image(tmp_path / "gone.dcm")


def test_a_patients_name_in_a_path_stops_training_and_is_never_printed(tmp_path, capsys):
    # pydicom-data's leg X-ray belongs to 'CompressedSamples^RG3': a folder named after the patient
    for cls, n in (("a", 4), ("b", 4)):
        for i in range(n):
            real("RG3_UNCR.dcm", tmp_path, f"data/{cls}/rg3/{i}.dcm")
    assert main(["train", "--data", str(tmp_path / "data"), "--epochs", "1", "--img-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "contains its patient's name" in err and "<patient>" in err
    assert "rg3" not in err.lower() and "compressedsamples" not in err.lower()
    assert dicom.mask_patient_name("/d/Doe^John/x.dcm", "Doe^John") == "/d/<patient>^<patient>/x.dcm"


def test_a_folder_of_dicom_and_png_trains_and_predicts_with_no_patient_tag_in_the_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for cls, bright in (("dark", 0), ("bright", 1)):
        for i in range(12):
            base = rng.integers(0, 1500, (32, 32)) + bright * 2500
            if i % 2:
                write_dicom(tmp_path / "d" / cls / f"{i}.dcm", 4095 - base, photometric="MONOCHROME1", slope=0.5,
                            intercept=-100.0, patient="Doe^Jane")
            else:
                (tmp_path / "d" / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray((base // 16).astype(np.uint8)).save(tmp_path / "d" / cls / f"{i}.png")
    res = cnnkit.train(str(tmp_path / "d"), epochs=3, img_size=16, out=str(tmp_path / "r"), quiet=True, report=False)
    assert res["val_acc"] == 1.0  # brightness separates the classes in both formats
    for f in (tmp_path / "r").iterdir():
        if f.suffix in (".json", ".csv"):
            assert "Jane" not in f.read_text() and "P0001" not in f.read_text()
    assert main(["predict", str(tmp_path / "r"), str(tmp_path / "d" / "bright" / "1.dcm"), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["predictions"][0]["top"][0]["class"] == "bright"


def test_window_flag_is_checked_and_saved(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--window", "40"]) == 2
    assert "--window '40': give CENTER,WIDTH" in capsys.readouterr().err
    with pytest.raises(CnnkitError, match="width must be"):
        dicom.parse_window("40,0")
    ramp = (np.arange(16 * 16).reshape(16, 16) * 16).astype(np.uint16)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(ramp + i).save(tmp_path / "d" / cls / f"{i}.png")
    res = cnnkit.train(str(tmp_path / "d"), epochs=1, window="2000,2001", out=str(tmp_path / "r"), quiet=True,
                       report=False)
    assert cnnkit.load_model(res["run_dir"]).preprocess.window == (2000.0, 2001.0)
