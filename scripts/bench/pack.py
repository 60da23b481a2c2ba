"""Stage ``pack``: image/depth conversions and depth -> points -> filled rclpy PointCloud2, ours vs the
``pointcloud2`` PyPI package (same bytes checked first); ``compressed_decode_ms``: a 640x480 JPEG
(image_transport's compressed input) decoded to rgb8."""

from __future__ import annotations

import numpy as np

from .common import FRAME_HW, test_frame, timed


def stage_pack(res: dict, repeat: int) -> None:
    import pointcloud2
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import Header

    from moadepth_core import geometry
    from moadepth_core.geometry import pointcloud
    from moadepth_core.geometry import postprocess as depth_postprocess
    from moadepth_ros import messages

    h, w = FRAME_HW
    rgb = test_frame()
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 8.0, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.05] = np.nan  # some invalid pixels, as the node publishes
    K = geometry.intrinsics_matrix(525.0, 525.0, 319.5, 239.5)
    header = Header(frame_id="camera_optical_frame")
    img_msg = messages.numpy_to_image(rgb, "rgb8", header)

    def ours() -> PointCloud2:  # the node's own path
        return messages.cloud_to_msg(depth_postprocess.depth_cloud(depth, K, rgb=rgb), header)

    lib_fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                  PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
                  PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
                  PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1)]

    def library() -> PointCloud2:
        pts = geometry.backproject(depth, K)
        colour = pointcloud.pack_rgb(rgb).view(np.float32)
        arr = np.concatenate([pts, colour[..., None]], axis=-1)  # (H, W, 4) float32, unstructured
        cloud = pointcloud2.create_cloud(header, lib_fields, arr)
        msg = PointCloud2(header=header, height=cloud.height, width=cloud.width, fields=list(cloud.fields),
                          is_bigendian=cloud.is_bigendian, point_step=cloud.point_step,
                          row_step=cloud.row_step, is_dense=cloud.is_dense)
        msg.data = messages._byte_array(cloud.data)
        return msg

    a, b = ours(), library()  # same bytes, or the comparison is meaningless
    assert bytes(a.data) == bytes(b.data) and a.point_step == b.point_step, "pack outputs differ"
    ours_ms = timed(ours, repeat * 3)
    lib_ms = timed(library, repeat * 3)
    conv_in = timed(lambda: messages.image_to_rgb8(img_msg), repeat * 3)
    conv_out = timed(lambda: messages.numpy_to_image(depth, "32FC1", header), repeat * 3)
    # image_transport's compressed input (issue 21): one 640x480 JPEG (quality 95) to HxWx3 RGB, as the node does
    jpeg_msg = messages.compressed_image_msg(rgb, "jpeg", header)
    decode_ms = timed(lambda: messages.compressed_to_rgb8(jpeg_msg), repeat * 3)
    res["compressed_decode_ms"] = round(decode_ms, 3)
    res["details"]["compressed_jpeg_bytes"] = len(jpeg_msg.data)
    print(f"  compressed input: a {w}x{h} JPEG of {len(jpeg_msg.data)} bytes decodes to rgb8 in {decode_ms:.3f} ms",
          flush=True)
    res["details"]["pack_ms"] = {"ours_points_to_msg": round(ours_ms, 2), "pointcloud2_lib": round(lib_ms, 2),
                                 "image_msg_to_rgb8": round(conv_in, 3), "depth_to_32FC1_msg": round(conv_out, 3)}
    res["pack_ms"] = round(ours_ms, 2)
    res["pack_ms_pointcloud2"] = round(lib_ms, 2)
    res["pack_speedup_vs_pointcloud2"] = round(lib_ms / ours_ms, 2)
    print(f"  pack ours {ours_ms:.2f} ms, pointcloud2 {lib_ms:.2f} ms; image->rgb8 {conv_in:.3f} ms, "
          f"depth->32FC1 {conv_out:.3f} ms", flush=True)

