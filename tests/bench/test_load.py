"""The load generator and the engine comparison run end to end (smoke runs, no speed targets).

On the real 300-W test images, or the synthetic ones without the data: the benchmarks'
code paths, not their numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load import main


@pytest.mark.process
def test_load_reports_every_level_and_the_overload(
    tiny_model: Path, any_data_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "load.json"
    code = main(
        [
            f"--model={tiny_model}",
            f"--data-root={any_data_root}",
            "--images=3",
            "--levels=1,2",
            "--duration=2",
            "--warmup=0.2",
            "--engine-seconds=1",
            "--overload=2",
            "--overload-duration=1",
            f"--json-out={out}",
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["engine"]["faces_per_s"] > 0
    levels = {row["name"]: row for row in report["levels"]}
    for name in ("c=1", "c=2"):
        assert levels[name]["ok"] > 0, levels[name]
        assert levels[name]["other"] == 0, levels[name]
    (overload,) = (row for name, row in levels.items() if "overload" in name)
    # Overload is answered with 200 or 503 only, and some requests still get through.
    assert overload["ok"] > 0 and overload["other"] == 0, overload


def test_engines_compares_model_files_in_one_run(
    tiny_model: Path, any_data_root: Path, tmp_path: Path
) -> None:
    from bench.engines import main as engines_main

    out = tmp_path / "engines.json"
    args = [str(tiny_model), str(tiny_model), f"--data-root={any_data_root}", "--seconds=0.2"]
    assert engines_main([*args, "--rounds=2", f"--json-out={out}"]) == 0
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == [str(tiny_model)] * 2
    assert rows[0]["ratio_to_first"] == 1.0 and rows[1]["faces_per_s"] > 0
    assert [r["mirror_average"] for r in rows] == ["false", "false"]


def test_engines_measures_each_file_with_and_without_mirror_averaging(
    tiny_model: Path, any_data_root: Path, tmp_path: Path
) -> None:
    from bench.engines import main as engines_main

    out = tmp_path / "engines.json"
    args = [str(tiny_model), f"--data-root={any_data_root}", "--seconds=0.2", "--rounds=1"]
    assert engines_main([*args, "--mirror-average=both", f"--json-out={out}"]) == 0
    rows = json.loads(out.read_text())
    assert [(r["model"], r["mirror_average"]) for r in rows] == [
        (str(tiny_model), "false"),
        (str(tiny_model), "true"),
    ]
    assert rows[0]["ratio_to_first"] == 1.0 and rows[1]["faces_per_s"] > 0


def test_the_load_benchmark_s_engine_runs_as_its_server_does() -> None:
    from bench.load import get_args_parser, mirror_average_of, service_settings

    parse = get_args_parser().parse_args
    assert not mirror_average_of(service_settings(parse([])))
    assert mirror_average_of(service_settings(parse(["--set", "MIRROR_AVERAGE=true"])))
    assert not mirror_average_of(service_settings(parse(["--set", "mirror_average=0"])))


def test_a_mix_of_upload_sizes_scales_every_kth_image_and_its_box(any_data_root: Path) -> None:
    import io

    from PIL import Image

    from bench.load import BOUNDARY, load_payloads, test_faces

    plain = load_payloads(any_data_root, 4, 8000)
    mixed = load_payloads(any_data_root, 4, 8000, large_every=2, large_side=1200)
    assert [p.name.endswith("@1200") for p in mixed] == [False, True, False, True]
    assert mixed[0] == plain[0]
    body = mixed[1].request.split(b"\r\n\r\n", 2)[2]
    image = body.split(f"\r\n--{BOUNDARY}".encode())[0]
    with Image.open(io.BytesIO(image)) as big:
        assert max(big.size) == 1200
    sample = test_faces(any_data_root, 4)[1]
    box = json.loads(body.split(b'name="boxes"\r\n\r\n')[1].split(b"\r\n")[0])[0]
    with Image.open(sample.image_path) as original:
        factor = 1200 / max(original.size)
    assert box == pytest.approx([(v + 0.5) * factor - 0.5 for v in sample.box("file")])
