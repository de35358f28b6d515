"""Public-dataset adapters, on a few rows written with each file's real column names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conceptlens.data import (
    CHESTXRAY14_LABELS,
    CHEXPERT_LABELS,
    load_chestxray14,
    load_chexpert,
    load_fitzpatrick17k,
    load_ham10000,
    load_isic,
)
from conceptlens.exceptions import ConfigError, DataError, MissingFileError


def _img(path: Path, value: int, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, 3) if mode == "RGB" else size
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_ham10000(tmp_path):
    (tmp_path / "HAM10000_metadata.csv").write_text(
        "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
        "HAM_0000118,ISIC_0027419,bkl,histo,80.0,male,scalp\n"
        "HAM_0000118,ISIC_0025030,bkl,histo,80.0,male,scalp\n"
        "HAM_0002730,ISIC_0026769,mel,histo,,female,back\n"
        "HAM_0001466,ISIC_0031633,nv,follow_up,75.0,male,ear\n"
    )
    part1, part2 = tmp_path / "HAM10000_images_part_1", tmp_path / "HAM10000_images_part_2"
    _img(part1 / "ISIC_0027419.jpg", 10)
    _img(part1 / "ISIC_0025030.jpg", 20)
    _img(part2 / "ISIC_0026769.jpg", 30)
    _img(part2 / "ISIC_0031633.jpg", 40)
    ds = load_ham10000(tmp_path / "HAM10000_metadata.csv", [part1, part2])
    assert ds.ids == ["ISIC_0027419", "ISIC_0025030", "ISIC_0026769", "ISIC_0031633"]
    assert ds.classes == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert ds.labels.tolist() == [2, 2, 4, 5]
    assert ds.metadata["patient_id"].tolist()[:2] == ["HAM_0000118"] * 2
    assert np.isnan(ds.metadata.loc["ISIC_0026769", "age"])
    assert ds.metadata.loc["ISIC_0031633", "localization"] == "ear"
    assert abs(int(ds[2].image.mean()) - 30) <= 2  # JPEG is lossy
    parts = ds.split("group", group_column="lesion_id", fractions={"a": 0.5, "b": 0.5})
    homes = {k for k, v in parts.items() if "ISIC_0027419" in v.ids or "ISIC_0025030" in v.ids}
    assert len(homes) == 1  # both images of lesion HAM_0000118 in one split


def test_isic2019_onehot_and_metadata(tmp_path):
    gt = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text(
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"
        "ISIC_0000000,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
        "ISIC_0000002,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
        "ISIC_0000004_downsampled,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
        "ISIC_0000006,0.0,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
    )
    md = tmp_path / "ISIC_2019_Training_Metadata.csv"
    md.write_text(
        "image,age_approx,anatom_site_general,lesion_id,sex\n"
        "ISIC_0000000,55.0,anterior torso,,female\n"
        "ISIC_0000002,60.0,upper extremity,,female\n"
        "ISIC_0000004_downsampled,80.0,posterior torso,BCN_0000019,male\n"
        "ISIC_0000006,25.0,posterior torso,,female\n"
    )
    images = tmp_path / "ISIC_2019_Training_Input"
    for name in ("ISIC_0000000", "ISIC_0000002", "ISIC_0000004_downsampled", "ISIC_0000006"):
        _img(images / f"{name}.jpg", 100)
    with pytest.raises(DataError, match=r"line 5: one-hot .* exactly one 1"):
        load_isic(gt, images, metadata_csv=md)
    ds = load_isic(gt, images, metadata_csv=md, on_error="skip")
    assert ds.classes == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    assert ds.labels.tolist() == [1, 0, 0]
    assert ds.metadata["dx"].tolist() == ["NV", "MEL", "MEL"]
    assert ds.metadata.loc["ISIC_0000004_downsampled", "site_anatomic"] == "posterior torso"
    assert ds.metadata.loc["ISIC_0000004_downsampled", "patient_id"] == "BCN_0000019"
    assert ds.metadata.loc["ISIC_0000000", "age"] == 55.0
    assert [s.id for s in ds.skipped] == ["ISIC_0000006"]
    assert ds[2].image.shape == (6, 5, 3)


NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
)


def test_chestxray14(tmp_path):
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_text(
        NIH_HEADER + "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
        "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,\n"
        "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,\n"
        "00000003_000.png,Hernia|Pleural_Thickening,0,3,074Y,F,AP,2500,2048,0.168,0.168,\n"
    )
    for k, sub in enumerate(["images_001/images", "images_001/images", "images_002/images"]):
        name = ["00000001_000.png", "00000001_001.png", "00000002_000.png"][k]
        _img(tmp_path / sub / name, 50 + k, size=(8, 8), mode="L")
    _img(tmp_path / "images_002/images/00000003_000.png", 90, size=(8, 8), mode="L")
    ds = load_chestxray14(csv, tmp_path)  # searched recursively
    assert ds.is_multilabel and ds.classes == list(CHESTXRAY14_LABELS)
    lab = ds.labels
    col = {c: j for j, c in enumerate(ds.classes)}
    assert lab[0].sum() == 1 and lab[0, col["Cardiomegaly"]] == 1
    assert lab[1, col["Emphysema"]] == 1 and lab[1].sum() == 2
    assert lab[2].sum() == 0  # No Finding
    assert lab[3, col["Hernia"]] == 1 and lab[3, col["Pleural_Thickening"]] == 1
    m = ds.metadata
    assert m["patient_id"].tolist() == ["1", "1", "2", "3"]
    assert m.loc["00000003_000.png", "age"] == 74.0  # "074Y" of the old release
    assert m.loc["00000001_001.png", "original_width"] == 2894
    assert m.loc["00000002_000.png", "pixel_spacing_y"] == pytest.approx(0.171)
    assert m.loc["00000003_000.png", "view_position"] == "AP"
    assert not any(str(c).startswith("Unnamed") for c in m.columns)
    assert ds[3].image.shape == (8, 8, 3) and ds[3].image.max() == 90
    parts = ds.split("group", fractions={"train": 0.5, "test": 0.5}, seed=3)
    homes = [k for k, v in parts.items() if "00000001_000.png" in v.ids]
    assert "00000001_001.png" in parts[homes[0]].ids


def test_chestxray14_unknown_finding(tmp_path):
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_text(NIH_HEADER + "x.png,Covid,0,1,58,M,PA,1,1,0.1,0.1,\n")
    with pytest.raises(DataError, match=r"line 2: unknown finding 'Covid'"):
        load_chestxray14(csv, tmp_path)


CHEXPERT_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS) + "\n"


@pytest.mark.parametrize(
    ("policy", "expected"), [("zeros", 0.0), ("ones", 1.0), ("ignore", np.nan)]
)
def test_chexpert_uncertainty_policy(tmp_path, policy, expected):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    #            NoF  EnlC Card LOpa LLes Edem Cons Pneu Atel Ptx  PlEf PlOt Frac SupD
    row1 = "1.0,,,,,,,,,0.0,,,,1.0"
    row2 = ",,-1.0,1.0,,-1.0,,,,,1.0,,,"
    (root / "train.csv").write_text(
        CHEXPERT_HEADER
        + f"CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,"
        f"Frontal,AP,{row1}\n"
        + f"CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,"
        f"Frontal,AP,{row2}\n"
    )
    _img(root / "train/patient00001/study1/view1_frontal.jpg", 60, mode="L")
    _img(root / "train/patient00002/study2/view1_frontal.jpg", 70, mode="L")
    ds = load_chexpert(root / "train.csv", uncertain=policy)
    col = {c: j for j, c in enumerate(ds.classes)}
    lab = ds.labels
    assert lab[0, col["No Finding"]] == 1 and lab[0, col["Support Devices"]] == 1
    assert lab[0, col["Pneumothorax"]] == 0 and lab[0, col["Edema"]] == 0  # blank -> 0
    for name in ("Cardiomegaly", "Edema"):
        np.testing.assert_equal(lab[1, col[name]], expected)
    assert lab[1, col["Lung Opacity"]] == 1 and lab[1, col["Pleural Effusion"]] == 1
    assert ds.metadata["patient_id"].tolist() == ["patient00001", "patient00002"]
    assert ds.metadata["sex"].tolist() == ["Female", "Female"]
    assert ds[1].image.shape == (6, 5, 3)  # paths resolved from the CSV's parent folder


def test_chexpert_rejects_bad_policy_and_values(tmp_path):
    with pytest.raises(ConfigError, match=r"uncertain must be"):
        load_chexpert(tmp_path / "train.csv", uncertain="maybe")
    csv = tmp_path / "train.csv"
    csv.write_text(CHEXPERT_HEADER + "a.jpg,Male,30,Frontal,PA,2.0" + "," * 13 + "\n")
    with pytest.raises(DataError, match=r"line 2: CheXpert labels must be 1, 0, -1 or blank"):
        load_chexpert(csv)


def test_fitzpatrick17k(tmp_path):
    csv = tmp_path / "fitzpatrick17k.csv"
    csv.write_text(
        "md5hash,fitzpatrick_scale,fitzpatrick_centaur,label,nine_partition_label,"
        "three_partition_label,qc,url,url_alphanum\n"
        "5e82a45bc5d78bd24ae9202d194423f8,3,3,drug induced pigmentary changes,"
        "inflammatory,non-neoplastic,,https://www.dermaamin.com/x.jpg,httpwwwdermaamincomx\n"
        "fa2911a9b13b6f8af79cb700937cc14f,1,1,photodermatoses,inflammatory,non-neoplastic,,"
        "https://www.dermaamin.com/y.jpg,httpwwwdermaamincomy\n"
        "d2bac3c9e4499032ca8e9b07c7d3bc40,-1,-1,basal cell carcinoma,"
        "malignant epidermal,malignant,1 Diagnostic,https://a/z.jpg,httpaz\n"
    )
    images = tmp_path / "images"
    _img(images / "5e82a45bc5d78bd24ae9202d194423f8.jpg", 120)
    _img(images / "fa2911a9b13b6f8af79cb700937cc14f.jpg", 130)
    ds = load_fitzpatrick17k(csv, images, on_error="skip")
    assert ds.classes == ["malignant", "non-neoplastic"]
    assert ds.metadata["group"].tolist() == ["FST3", "FST1", "unknown"]
    assert "url" not in ds.metadata.columns
    assert [s.id for s in ds] == [
        "5e82a45bc5d78bd24ae9202d194423f8",
        "fa2911a9b13b6f8af79cb700937cc14f",
    ]
    assert [s.id for s in ds.skipped] == ["d2bac3c9e4499032ca8e9b07c7d3bc40"]
    assert "image file not found" in ds.skipped[0].reason
    nine = load_fitzpatrick17k(csv, images, label="nine_partition_label")
    assert nine.classes == ["inflammatory", "malignant epidermal"]
    with pytest.raises(MissingFileError):
        nine[2]


def test_adapter_rejects_wrong_file(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"not a HAM10000 metadata file"):
        load_ham10000(tmp_path / "x.csv", tmp_path)
