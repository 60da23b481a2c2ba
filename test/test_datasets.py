"""RGB-D sources and transforms, on tiny files written in exactly the real on-disk formats."""

from __future__ import annotations

import json
import pickle
import sys

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

from moadepth_core.data import (
    NYU_K,
    EvalTransform,
    FolderSource,
    NYUFileListSource,
    NYUMatSource,
    RGBDDataset,
    RGBDFrame,
    TrainTransform,
    associate_by_stamp,
    open_source,
    write_folder_frame,
    write_intrinsics,
)
from moadepth_core.data.frames import ListSource
from moadepth_core.errors import DataError

K_SMALL = np.array([[50.0, 0, 29.5], [0, 50.0, 19.5], [0, 0, 1]])


# ---------------------------------------------------------------- NYU labelled .mat


@pytest.fixture(scope="module")
def nyu_mat(tmp_path_factory):
    """A 3-frame v7.3-layout .mat: images (N,3,640,480) uint8, depths (N,640,480) float32."""
    root = tmp_path_factory.mktemp("nyu")
    n = 3
    images = np.zeros((n, 3, 640, 480), np.uint8)
    depths = np.full((n, 640, 480), 1.0, np.float32)
    for i in range(n):
        images[i, 0, 20, 10] = 255  # red at row 10, column 20 (MATLAB stores (N,C,W,H) in h5py)
        images[i, 2, 600, 470] = 100 + i  # blue at row 470, column 600 tags the frame
        depths[i, 20, 10] = 2.5 + i
        depths[i, 0, 0] = np.nan
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("depths", data=depths)
        f.create_dataset("labels", data=np.zeros((n, 640, 480), np.uint16))
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    return root / "nyu_depth_v2_labeled.mat"


def test_nyu_mat_frames_are_transposed_to_hwc(nyu_mat):
    src = NYUMatSource(nyu_mat, split="all")
    assert len(src) == 3
    fr = src[1]
    assert fr.rgb.shape == (480, 640, 3) and fr.rgb.dtype == np.uint8
    assert fr.depth.shape == (480, 640) and fr.depth.dtype == np.float32
    assert tuple(fr.rgb[10, 20]) == (255, 0, 0)
    assert fr.rgb[470, 600, 2] == 101
    assert fr.depth[10, 20] == pytest.approx(3.5)
    assert fr.depth[0, 0] == 0.0  # NaN -> invalid
    np.testing.assert_allclose(fr.K, NYU_K)
    assert fr.K[0, 0] == pytest.approx(518.8579) and fr.K[1, 2] == pytest.approx(253.7362)


def test_nyu_mat_splits_are_one_based(nyu_mat):
    test = NYUMatSource(nyu_mat)  # default split "test", splits.mat beside the .mat
    train = NYUMatSource(nyu_mat, split="train")
    assert len(test) == 1 and len(train) == 2
    assert test[0].rgb[470, 600, 2] == 101  # MATLAB index 2 = frame 1
    assert [f.rgb[470, 600, 2] for f in train] == [100, 102]
    assert test[0].name == "nyu_0001"


def test_nyu_mat_missing_splits_and_files(nyu_mat, tmp_path):
    with pytest.raises(DataError, match="nowhere.mat"):
        NYUMatSource(nyu_mat, split="test", splits_path=tmp_path / "nowhere.mat")
    with pytest.raises(DataError, match="missing.mat"):
        NYUMatSource(tmp_path / "missing.mat", split="all")
    bad = tmp_path / "v5.mat"
    scipy.io.savemat(bad, {"x": np.zeros(3)})  # an old-format .mat is not the labelled set
    with pytest.raises(DataError, match="v5.mat"):
        NYUMatSource(bad, split="all")
    with pytest.raises(DataError, match="split"):
        NYUMatSource(nyu_mat, split="val")


def test_nyu_mat_handle_is_per_process(nyu_mat):
    src = NYUMatSource(nyu_mat, split="all")
    src[0]
    clone = pickle.loads(pickle.dumps(src))  # what DataLoader workers (spawn) receive
    assert clone._h5 is None and clone[2].rgb[470, 600, 2] == 102
    src._pid = -1  # as if forked: the inherited handle must not be reused
    old = src._h5
    assert src[0].depth[10, 20] == pytest.approx(2.5)
    assert src._h5 is not old


# ---------------------------------------------------------------- BTS / AdaBins lists


def _write_png16(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr.astype(np.uint16))


def _write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_bts_file_list(tmp_path):
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[..., 0] = 200  # red, uniform so JPEG keeps it
    _write_rgb(tmp_path / "kitchen_0028a/rgb_00045.jpg", rgb)
    mm = np.zeros((480, 640), np.uint16)
    mm[100, 200] = 1234
    _write_png16(tmp_path / "kitchen_0028a/sync_depth_00045.png", mm)
    small = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    _write_rgb(tmp_path / "b/rgb_1.png", small)
    _write_png16(tmp_path / "b/sync_depth_1.png", np.full((6, 8), 2000))
    lst = tmp_path / "nyudepthv2_test_files_with_gt.txt"
    lst.write_text(
        "/kitchen_0028a/rgb_00045.jpg kitchen_0028a/sync_depth_00045.png 518.8579\n\n"
        "b/rgb_2.jpg None 518.8579\n"
        "b/rgb_1.png b/sync_depth_1.png 500\n"
    )
    src = NYUFileListSource(lst)
    assert len(src) == 2 and src.skipped == 1
    f0, f1 = src[0], src[1]
    assert f0.name == "kitchen_0028a/rgb_00045"
    assert abs(int(f0.rgb[5, 5, 0]) - 200) <= 2 and f0.rgb[5, 5, 2] <= 2  # BGR -> RGB
    assert f0.depth[100, 200] == pytest.approx(1.234) and f0.depth[0, 0] == 0
    assert f0.K[0, 0] == f0.K[1, 1] == pytest.approx(518.8579)
    assert (f0.K[0, 2], f0.K[1, 2]) == pytest.approx((325.5824, 253.7362))
    np.testing.assert_array_equal(f1.rgb, small)
    assert np.all(f1.depth == pytest.approx(2.0))
    assert f1.K[0, 0] == 500 and f1.K[0, 2] == pytest.approx(3.5)


def test_bts_list_errors(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("a.png b.png 518.8\nonly_one_field\n")
    with pytest.raises(DataError, match=r"list.txt line 2"):
        NYUFileListSource(lst)
    lst.write_text("a.png b.png focal\n")
    with pytest.raises(DataError, match=r"line 1"):
        NYUFileListSource(lst)
    with pytest.raises(DataError, match="nolist.txt"):
        NYUFileListSource(tmp_path / "nolist.txt")
    lst.write_text("x/rgb.png x/depth.png 518.8\n")
    src = NYUFileListSource(lst)
    with pytest.raises(DataError, match=r"cannot read .*x/rgb.png: no such file"):
        src[0]
    _write_rgb(tmp_path / "x/rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"cannot read .*x/depth.png"):
        src[0]
    (tmp_path / "x/depth.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read .*x/depth.png"):
        src[0]
    assert cv2.imwrite(str(tmp_path / "x/depth.png"), np.zeros((4, 4), np.uint8))  # 8-bit: a visualisation
    with pytest.raises(DataError, match="16-bit"):
        src[0]


# ---------------------------------------------------------------- folder form and TUM


def _frame(h=40, w=60, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, (h, w)).astype(np.float32)
    depth[:5, :5] = 0
    return rgb, depth


def test_folder_npy_and_png(tmp_path):
    rgb, depth = _frame()
    write_folder_frame(tmp_path / "npy", 0, rgb, depth, K_SMALL)
    write_folder_frame(tmp_path / "npy", 1, rgb, depth * 0.5)
    src = FolderSource(tmp_path / "npy")
    assert len(src) == 2 and [f.name for f in src] == ["000000", "000001"]
    np.testing.assert_array_equal(src[0].rgb, rgb)
    np.testing.assert_array_equal(src[0].depth, depth)
    np.testing.assert_allclose(src[1].K, K_SMALL)
    # the layout ARCHITECTURE.md promises (and synth writes)
    assert (tmp_path / "npy/rgb/000001.png").is_file() and (tmp_path / "npy/depth/000001.npy").is_file()
    meta = json.loads((tmp_path / "npy/intrinsics.json").read_text())
    assert set(meta) == {"fx", "fy", "cx", "cy", "width", "height", "depth_scale"}

    write_folder_frame(tmp_path / "png", 7, rgb, depth, K_SMALL, depth_format="png")
    raw = cv2.imread(str(tmp_path / "png/depth/000007.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw[20, 30] == round(depth[20, 30] * 1000)
    fr = open_source(tmp_path / "png")[0]
    np.testing.assert_allclose(fr.depth, depth, atol=0.5e-3 + 1e-6)
    assert np.all(fr.depth[:5, :5] == 0)


def test_folder_depth_scale_and_pairing(tmp_path):
    rgb, depth = _frame()
    write_intrinsics(tmp_path, K_SMALL, 60, 40, depth_scale=4000)
    write_folder_frame(tmp_path, 3, rgb, depth, depth_format="png", depth_scale=4000)
    _write_rgb(tmp_path / "rgb/000004.png", rgb)  # no depth: skipped and counted
    src = FolderSource(tmp_path)
    assert len(src) == 1 and src.unpaired == 1 and src.depth_scale == 4000
    np.testing.assert_allclose(src[0].depth, depth, atol=0.2e-3)
    assert FolderSource(tmp_path, depth_scale=2000)[0].depth[20, 30] == pytest.approx(2 * depth[20, 30], abs=1e-3)


def test_folder_errors(tmp_path):
    rgb, depth = _frame()
    write_folder_frame(tmp_path, 0, rgb, depth)
    with pytest.raises(DataError, match="intrinsics.json"):
        FolderSource(tmp_path)
    write_intrinsics(tmp_path, K_SMALL, 64, 48)
    with pytest.raises(DataError, match="intrinsics.json is for 64x48"):
        FolderSource(tmp_path)[0]
    write_intrinsics(tmp_path, K_SMALL, 60, 40)
    (tmp_path / "depth/000000.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read .*000000.npy"):
        FolderSource(tmp_path)[0]
    (tmp_path / "rgb/000000.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read .*rgb/000000.png"):
        FolderSource(tmp_path)[0]
    (tmp_path / "intrinsics.json").write_text("{not json")
    with pytest.raises(DataError, match="intrinsics.json"):
        FolderSource(tmp_path)


def _write_tum(root):
    rgb, _ = _frame(seed=1)
    lines_rgb, lines_depth = ["# color images", "# timestamp filename"], ["# depth maps"]
    for k, (t_rgb, t_depth) in enumerate([("1305031102.175304", "1305031102.160407"),
                                          ("1305031102.211214", "1305031102.226738"),
                                          ("1305031103.000000", "1305031109.000000")]):
        _write_rgb(root / f"rgb/{t_rgb}.png", rgb)
        _write_png16(root / f"depth/{t_depth}.png", np.full((40, 60), 5000 * (k + 1)))
        lines_rgb.append(f"{t_rgb} rgb/{t_rgb}.png")
        lines_depth.append(f"{t_depth} depth/{t_depth}.png")
    (root / "rgb.txt").write_text("\n".join(lines_rgb) + "\n")
    (root / "depth.txt").write_text("\n".join(lines_depth) + "\n")


def test_tum_timestamp_pairing(tmp_path):
    _write_tum(tmp_path)
    with pytest.raises(DataError, match="K="):
        FolderSource(tmp_path, pairing="timestamp")
    src = FolderSource(tmp_path, pairing="timestamp", K=K_SMALL)
    assert len(src) == 2 and src.unpaired == 1 and src.depth_scale == 5000
    assert src[0].stamp_ns == 1305031102175304000
    assert np.all(src[0].depth == 1.0) and np.all(src[1].depth == 2.0)
    auto = open_source(tmp_path, K=K_SMALL)
    assert isinstance(auto, FolderSource) and auto.pairing == "timestamp" and len(auto) == 2
    with pytest.raises(DataError, match="no RGB image has a matching depth"):  # all > 10 ms apart
        FolderSource(tmp_path, pairing="timestamp", K=K_SMALL, max_time_diff=0.01)
    (tmp_path / "depth.txt").unlink()
    with pytest.raises(DataError, match=r"cannot read .*depth.txt"):
        FolderSource(tmp_path, pairing="timestamp", K=K_SMALL)


def test_associate_by_stamp_is_one_to_one():
    s = 1_000_000_000
    rgb = [0, 10 * s // 1000, 20 * s // 1000]
    depth = [11 * s // 1000]  # nearest to both rgb[1] and rgb[2]; only the closer one gets it
    assert associate_by_stamp(rgb, depth, 0.02) == [(1, 0)]
    assert associate_by_stamp(rgb, [], 0.02) == []
    assert associate_by_stamp([0], [30 * s // 1000], 0.02) == []


# ---------------------------------------------------------------- frames and open_source


def test_frame_sanitises_depth_and_slicing():
    rgb = np.zeros((2, 3, 3), np.uint8)
    fr = RGBDFrame(rgb, np.array([[np.nan, np.inf, -1], [0, 1.5, 2]], np.float64), np.eye(3), "a")
    assert fr.depth.dtype == np.float32 and fr.depth.tolist() == [[0, 0, 0], [0, 1.5, 2]]
    with pytest.raises(DataError, match="aligned"):
        RGBDFrame(rgb, np.zeros((3, 3)), np.eye(3), "b")
    src = ListSource([RGBDFrame(rgb, np.zeros((2, 3)), np.eye(3), str(i)) for i in range(5)])
    assert src[-1].name == "4" and [f.name for f in src[1:4]] == ["1", "2", "3"]
    assert [f.name for f in src.select([4, 0])] == ["4", "0"]
    assert "2 of" in src.select([4, 0]).describe()
    with pytest.raises(IndexError):
        src[5]


def test_open_source_detection(nyu_mat, tmp_path, monkeypatch):
    assert isinstance(open_source(nyu_mat), NYUMatSource) and len(open_source(nyu_mat, split="train")) == 2
    rgb, depth = _frame()
    write_folder_frame(tmp_path / "f", 0, rgb, depth, K_SMALL)
    assert isinstance(open_source(tmp_path / "f"), FolderSource)
    (tmp_path / "list.txt").write_text("f/rgb/000000.png f/depth/000000.png 50\n")
    lst = open_source(tmp_path / "list.txt")
    assert isinstance(lst, NYUFileListSource) and lst.data_root == tmp_path
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag/metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    monkeypatch.setitem(sys.modules, "moadepth_core.data.rosbag.source", None)  # import fails
    with pytest.raises(DataError, match="bag support is unavailable"):
        open_source(tmp_path / "bag")
    (tmp_path / "x.mcap").write_bytes(b"")
    with pytest.raises(DataError, match="bag support is unavailable"):
        open_source(tmp_path / "x.mcap")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is not a dataset moadepth can read: expected"):
        open_source(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        open_source(tmp_path / "nope")
    with pytest.raises(DataError, match="cannot take these options"):
        open_source(tmp_path / "f", splits_path="x")


# ---------------------------------------------------------------- transforms


def _coded_frame(h=40, w=60):
    """Each pixel's red value and depth encode the same id, to check they move together."""
    ids = (np.arange(h * w).reshape(h, w) % 250 + 1).astype(np.uint8)
    rgb = np.stack([ids, np.zeros_like(ids), np.zeros_like(ids)], axis=-1)
    depth = ids.astype(np.float32) / 10.0
    depth[:, :7] = 0  # invalid strip on the left
    return RGBDFrame(rgb, depth, K_SMALL, "coded")


def test_train_focal_follows_resize():
    fr = _coded_frame()
    t = TrainTransform((20, 30), scale_range=(1.0, 1.0), hflip_p=0)
    s = t(fr, rng=np.random.default_rng(0))
    assert s["focal"] == pytest.approx(25.0)
    assert s["image"].shape == (3, 20, 30) and s["image"].dtype == torch.float32
    assert s["depth"].shape == (1, 20, 30) and s["name"] == "coded"
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    t2 = TrainTransform((20, 30), scale_range=(2.0, 2.0), hflip_p=1.0)
    assert t2(fr, rng=np.random.default_rng(0))["focal"] == pytest.approx(50.0)  # flip keeps focal


def test_train_flip_moves_image_and_depth_together():
    fr = _coded_frame()
    t = TrainTransform((40, 60), scale_range=(1.0, 1.0), hflip_p=1.0, brightness=0, contrast=0, saturation=0)
    s = t(fr, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(s["depth"][0].numpy(), fr.depth[:, ::-1])
    red = np.round(s["image"][0].numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(red, fr.rgb[:, ::-1, 0])
    valid = s["depth"][0].numpy() > 0
    np.testing.assert_allclose(s["depth"][0].numpy()[valid], red[valid] / 10.0, rtol=1e-6)
    assert np.all(s["depth"][0].numpy()[:, -7:] == 0)  # the invalid strip moved to the right


def test_train_depth_is_nearest_and_invalid_stays_zero():
    fr = _coded_frame()
    t = TrainTransform((32, 48), scale_range=(1.0, 1.25))
    allowed = set(np.unique(fr.depth).tolist())
    for seed in range(5):
        d = t(fr, rng=np.random.default_rng(seed))["depth"].numpy()
        assert set(np.unique(d).tolist()) <= allowed
    d = EvalTransform((20, 30))(fr)["depth"][0].numpy()
    assert set(np.unique(d).tolist()) <= allowed and np.all(d[:, :3] == 0) and np.all(d[:, 4:] > 0)


def test_eval_transform_keeps_full_resolution_ground_truth():
    fr = _coded_frame()
    s = EvalTransform((32, 32))(fr)
    assert s["image"].shape == (3, 32, 32) and s["depth"].shape == (1, 32, 32)
    assert s["focal"] == pytest.approx(50.0 * 32 / 60)
    np.testing.assert_array_equal(s["depth_full"][0].numpy(), fr.depth)
    np.testing.assert_array_equal(s["image_rgb"], fr.rgb)
    np.testing.assert_array_equal(s["K"], K_SMALL)


def test_dataset_augmentation_is_deterministic_per_seed_epoch_index():
    src = ListSource([_coded_frame()] * 3)
    t = TrainTransform((24, 36))
    ds = RGBDDataset(src, t, seed=7)
    a, b = ds[1], ds[1]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])
    again = RGBDDataset(src, t, seed=7)[1]
    assert torch.equal(a["image"], again["image"])
    ds.set_epoch(1)
    others = [ds[1]["image"], RGBDDataset(src, t, seed=8)[1]["image"], RGBDDataset(src, t, seed=7)[2]["image"]]
    assert all(not torch.equal(a["image"], o) for o in others)
    assert len(ds) == 3
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 24, 36) and batch["focal"].shape == (3,)
