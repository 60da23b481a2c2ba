"""The printed table and the targets it checks (the figures themselves are in bench-results.json)."""

from __future__ import annotations

TARGETS = [  # {prec}: the node runs' precision
    ("node_output_hz", ">=", 10.0, "depth_node 640x480, points, {prec} (Hz)"),
    ("node_output_hz_torch_compile", ">=", 10.0, "same, backend torch_compile (Hz)"),
    ("node_output_hz_onnxruntime", ">=", 10.0, "same, backend onnxruntime fp32 (Hz)"),
    ("node_output_hz_onnxruntime_int8", ">=", 10.0, "same, backend onnxruntime int8 (Hz)"),
    ("node_overhead_ratio", "<=", 1.15, "node latency / raw forward"),
    ("node_overhead_ratio_torch_compile", "<=", 1.15, "same, backend torch_compile"),
    ("node_overhead_ratio_onnxruntime", "<=", 1.15, "same, backend onnxruntime"),
    ("node_overhead_ratio_onnxruntime_int8", "<=", 1.15, "same, backend onnxruntime int8"),
    ("node_nonforward_share", "<=", 0.15, "per frame: (latency - forward) / forward"),
    ("node_nonforward_share_torch_compile", "<=", 0.15, "same, backend torch_compile"),
    ("node_nonforward_share_onnxruntime", "<=", 0.15, "same, backend onnxruntime"),
    ("node_nonforward_share_onnxruntime_int8", "<=", 0.15, "same, backend onnxruntime int8"),
    ("node_rate_ratio_1080p_480p", ">=", 0.8, "node rate 1920x1080 / 640x480 (one run)"),
    ("node_latency_ratio_1080p_480p", "<=", 1.3, "node latency p50 1920x1080 / 640x480 (one run)"),
    ("speed_ratio_vs_da2_small", ">=", 5.0, "DA2-Small 518² ms / ours fp32 ms"),
    ("pack_speedup_vs_pointcloud2", ">=", 1.0, "pointcloud2 lib ms / ours ms"),
]


NODE_ORT_ROWS = [
    ("node_raw_forward_ms", "onnxruntime: raw forward before / after its node run", "ms"),
    ("node_output_hz", "onnxruntime: depth_node output rate (30 Hz in)", "Hz"),
    ("node_latency_p50_ms", "onnxruntime: node latency p50", "ms"),
    ("node_latency_p95_ms", "onnxruntime: node latency p95", "ms"),
    ("node_overhead_ratio", "onnxruntime: node latency p50 / raw forward", "x"),
    ("node_nonforward_share", "onnxruntime: per frame (latency - forward) / forward", "x"),
    ("node_nonforward_share_paced", "onnxruntime: same at a paced input", "x"),
]


def print_table(res: dict) -> None:
    rows = [
        ("forward_ms_fp32", "forward fp32, 640x480 via DepthEstimator (torch, 224² model)", "ms"),
        ("forward_ms_fp32_onnxruntime", "forward fp32, 640x480 via DepthEstimator (onnxruntime)", "ms"),
        ("forward_ms_int8_onnxruntime", "forward int8, 640x480 via DepthEstimator (onnxruntime)", "ms"),
        ("raw_forward_ms_int8_onnxruntime", "raw network forward int8 at 224² (onnxruntime)", "ms"),
        ("forward_ms_bf16", "forward bf16, 640x480 via DepthEstimator (torch)", "ms"),
        ("raw_forward_ms_bf16", "raw network forward bf16 at 224²", "ms"),
        ("node_raw_forward_ms", "raw forward {prec} 224², mean of just before / after the node run", "ms"),
        ("node_output_hz", "depth_node output rate (30 Hz in, points, {prec})", "Hz"),
        ("node_latency_p50_ms", "node latency p50 (publish -> depth received)", "ms"),
        ("node_latency_p95_ms", "node latency p95", "ms"),
        ("node_overhead_ratio", "node latency p50 / raw forward", "x"),
        ("node_latency_p50_ms_paced", "node latency p50 at a paced input (no queueing)", "ms"),
        ("node_forward_ms", "the node's own forward per frame, p50 (timing log)", "ms"),
        ("node_nonforward_share", "per frame: (latency - its forward) / its forward, p50", "x"),
        ("node_nonforward_share_paced", "same at a paced input", "x"),
        ("node_overhead_ratio_paced", "paced node latency p50 / raw forward", "x"),
        ("node_peak_rss_mb", "depth_node peak RSS (graph cached by the bench's own estimator)", "MB"),
        ("node_first_start_s", "depth_node, new checkpoint (exports): seconds to the first depth", "s"),
        ("node_first_start_peak_rss_mb", "same: peak RSS", "MB"),
        ("node_first_start_settled_rss_mb", "same: RSS after 5 s at 10 Hz", "MB"),
        ("node_first_start_child_peak_rss_mb", "same: peak RSS of the export's child process (its VmHWM)", "MB"),
        ("node_next_start_s", "depth_node, next start (cached graph): seconds to the first depth", "s"),
        ("node_next_start_peak_rss_mb", "same: peak RSS", "MB"),
        ("node_next_start_settled_rss_mb", "same: RSS after 5 s at 10 Hz", "MB"),
        ("transport_tiny_ms", "DDS alone (idle processes): tiny message, publish -> callback p50", "ms"),
        ("transport_image_ms", "DDS alone (idle processes): 640x480 rgb8, publish -> callback p50", "ms"),
        ("transport_depth_ms", "DDS alone (idle processes): 640x480 32FC1, publish -> callback p50", "ms"),
        ("transport_in_out_ms", "DDS alone (idle processes): image in + depth out", "ms"),
        ("transport_share_of_forward", "DDS transport in + out / the node's raw forward", "x"),
        ("forward_ms_bf16_torch_compile", "forward bf16, 640x480 via DepthEstimator (torch_compile)", "ms"),
        ("forward_ms_fp32_torch_compile", "forward fp32, 640x480 via DepthEstimator (torch_compile)", "ms"),
        ("node_raw_forward_ms_torch_compile", "torch_compile: raw forward before / after its node run", "ms"),
        ("node_output_hz_torch_compile", "torch_compile: depth_node output rate (30 Hz in)", "Hz"),
        ("node_latency_p50_ms_torch_compile", "torch_compile: node latency p50", "ms"),
        ("node_latency_p95_ms_torch_compile", "torch_compile: node latency p95", "ms"),
        ("node_overhead_ratio_torch_compile", "torch_compile: node latency p50 / raw forward", "x"),
        ("node_latency_p50_ms_paced_torch_compile", "torch_compile: node latency p50, paced", "ms"),
        ("node_overhead_ratio_paced_torch_compile", "torch_compile: paced latency / raw forward", "x"),
        ("node_nonforward_share_torch_compile", "torch_compile: per frame (latency - forward) / forward", "x"),
        ("node_nonforward_share_paced_torch_compile", "torch_compile: same at a paced input", "x"),
        *[(k + "_onnxruntime", label, unit) for k, label, unit in NODE_ORT_ROWS],
        *[(k + "_onnxruntime_int8", "onnxruntime int8: " + label.split(": ", 1)[1], unit)
          for k, label, unit in NODE_ORT_ROWS],
        *[(k + "_torch", "torch: " + label.split(": ", 1)[1], unit) for k, label, unit in NODE_ORT_ROWS],
        *[(k + "_latest", "frame_policy latest: " + label.split(": ", 1)[1], unit) for k, label, unit in NODE_ORT_ROWS],
        *[(f"node_{k}_{w}x{h}", f"default node, camera {w}x{h}: {label}", unit)
          for w, h in ((640, 480), (1280, 720), (1920, 1080))
          for k, label, unit in (("output_hz", "output rate", "Hz"), ("latency_p50_ms", "latency p50", "ms"),
                                 ("latency_p95_ms", "latency p95", "ms"),
                                 ("nonforward_share", "(latency - forward) / forward", "x"))],
        ("node_rate_ratio_1080p_480p", "default node: rate 1920x1080 / 640x480 (same run)", "x"),
        ("node_latency_ratio_1080p_480p", "default node: latency p50 1920x1080 / 640x480 (same run)", "x"),
        ("pack_ms", "depth -> points -> PointCloud2 (ours)", "ms"),
        ("pack_ms_pointcloud2", "same with the pointcloud2 library", "ms"),
        ("pack_speedup_vs_pointcloud2", "pack speed-up vs pointcloud2", "x"),
        ("compressed_decode_ms", "compressed input: 640x480 JPEG -> rgb8 (OpenCV)", "ms"),
        ("multi_camera_aggregate_hz", "3 cameras, one process: aggregate output rate", "Hz"),
        ("three_processes_aggregate_hz", "3 cameras, three processes: aggregate output rate", "Hz"),
        ("multi_camera_rss_mb", "3 cameras, one process: peak RSS", "MB"),
        ("three_processes_rss_mb", "3 cameras, three processes: peak RSS (sum)", "MB"),
        ("multi_camera_rate_ratio", "one process / three: aggregate rate (target >= 1.3)", "x"),
        ("multi_camera_rss_ratio", "one process / three: RSS (target <= 0.5)", "x"),
        ("multi_camera_min_share", "slowest camera / aggregate (target >= 0.25)", "x"),
        ("batched_forward_ms_per_image_batch1", "default (ORT fp32) forward per image, batch 1", "ms"),
        ("batched_forward_ms_per_image", "default (ORT fp32) forward per image, batch 3", "ms"),
        ("batched_forward_gain_batch3", "batch 3 per image / batch 1 (gain)", "x"),
        ("batched_forward_ms_per_image_torch_fp32_batch1", "torch fp32 forward per image, batch 1", "ms"),
        ("batched_forward_ms_per_image_torch_fp32_batch3", "torch fp32 forward per image, batch 3", "ms"),
        ("peer_da2_small_ms", "DA2-Small fp32 518x518 forward", "ms"),
        ("speed_ratio_vs_da2_small", "DA2-Small ms / ours fp32 ms (torch)", "x"),
        ("speed_ratio_vs_da2_small_onnxruntime", "DA2-Small ms / ours fp32 ms (onnxruntime)", "x"),
        ("train_images_per_s", "training throughput, batch 8 at 224², CPU", "img/s"),
    ]
    prec = res["node_precision"] + (f" {res['node_backend']}" if "node_backend" in res else "")
    print(f"\nmoadepth benchmark — {res['cpu']} ({'native' if res['cpu_native_bf16'] else 'no native'} bf16), "
          f"{res['threads']} threads, {res['date']}, load average {res['loadavg_start']:.1f} at start")
    print(f"{'figure':64s} {'value':>10s}")
    print("-" * 76)
    for key, label, unit in rows:
        if key in res:
            print(f"{label.format(prec=prec):64s} {res[key]:>10} {unit}")
    print("\ntargets:")
    for key, op, target, label in TARGETS:
        label = label.format(prec=prec)
        if key not in res:
            print(f"  {label:44s} not measured")
            continue
        ok = res[key] >= target if op == ">=" else res[key] <= target
        print(f"  {label:44s} {res[key]:>8} {op} {target:<6} {'MET' if ok else 'MISSED'}")

