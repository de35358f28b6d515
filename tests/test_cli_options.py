import numpy as np
import pytest
import xarray as xr

from conceptlens._cli_options import read_scores
from conceptlens.exceptions import DataError, MissingFileError


def _scores():
    return xr.DataArray(
        np.arange(6, dtype=np.float32).reshape(2, 3),
        dims=("concept", "sample"),
        coords={"sample": ["a", "b", "c"], "concept": ["x", "y"]},
        name="concept_score",
    )


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_read_scores_round_trips_and_orders_dims(tmp_path, suffix):
    from conceptlens.concepts import write_scores

    write_scores(_scores(), tmp_path / f"s{suffix}")
    got = read_scores(tmp_path / f"s{suffix}")
    assert got.dims == ("sample", "concept")
    np.testing.assert_array_equal(got.values, _scores().values.T)


def test_read_scores_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(MissingFileError, match="conceptlens score"):
        read_scores(tmp_path / "none.nc")
    with pytest.raises(DataError, match="is a folder"):
        read_scores(tmp_path)
    (tmp_path / "m.csv").write_text("path,label\n")
    with pytest.raises(DataError, match="not a netCDF file"):
        read_scores(tmp_path / "m.csv")
    _scores().rename("other").to_netcdf(tmp_path / "o.nc")
    with pytest.raises(DataError, match="no `concept_score` variable"):
        read_scores(tmp_path / "o.nc")
    _scores().rename({"concept": "feature"}).to_netcdf(tmp_path / "d.nc")
    with pytest.raises(DataError, match="expected"):
        read_scores(tmp_path / "d.nc")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.assign_coords(sample=["a", "a", "c"]), r"sample ids are not unique.*'a'"),
        (lambda s: s.assign_coords(concept=["x", "x"]), r"concept ids are not unique.*'x'"),
        (lambda s: s.isel(sample=slice(0, 0)), "has no samples"),
    ],
)
def test_read_scores_refuses_repeated_ids_and_empty_files(tmp_path, edit, match):
    # repeated ids made predict/explain write rows nobody could tell apart, and an empty
    # file was an internal error in predict
    edit(_scores()).to_netcdf(tmp_path / "s.nc")
    with pytest.raises(DataError, match=match):
        read_scores(tmp_path / "s.nc")
