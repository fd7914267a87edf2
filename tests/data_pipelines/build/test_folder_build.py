"""`mgen data build --source=folder:...` over the media factory's folder (good media, every kind
of bad media, near-duplicates), built once per module through the CLI in a subprocess."""
import collections
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from data_pipelines.build.driver import build_dataset
from data_pipelines.build.report import summarize
from data_pipelines.media.sample_folder import make_media_folder

from . import TINY_CONFIG, item_of, read_records, record_key, tiny_config

# A byte-identical copy of a good clip under another name (own caption): one of the two stays.
COPY = "copies/same_file.mp4"
COPY_CAPTION = "the same clip under another name"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    expected = make_media_folder(str(root))
    paired = set(expected["duplicates"]) | set(expected["duplicates"].values())
    copied = next(item for item, info in sorted(expected["good"].items())
                  if item.endswith(".mp4") and item not in paired and info["kind"] == "video")
    os.makedirs(root / "copies")
    shutil.copy(root / copied, root / COPY)
    (root / "copies" / "same_file.txt").write_text(COPY_CAPTION + "\n")
    expected["duplicates"][COPY] = copied
    return root, expected


def _cli_build(root, out, *beam_flags):
    run = subprocess.run(
        [sys.executable, "-m", "mgen_jax.cli", "data", "build", f"--source=folder:{root}",
         f"--out={out}", f"--config={TINY_CONFIG}", "--no-progress", *beam_flags],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def built(folder, tmp_path_factory):
    root, _ = folder
    out = tmp_path_factory.mktemp("built") / "dataset"
    summary = _cli_build(root, out)
    return {"out": out, "summary": summary, "records": read_records(out),
            "manifest": json.loads((out / "manifest.json").read_text()),
            "report": json.loads((out / "report.json").read_text())}


def test_the_cli_prints_the_report_summary(built, folder):
    root, _ = folder
    assert built["summary"] == summarize(built["report"], str(built["out"]))
    files = [f for _, _, names in os.walk(root) for f in names
             if not f.endswith(".txt") and f != "captions.jsonl"]
    assert built["summary"]["seen"] == len(files)
    assert built["summary"]["already_built"] is False


def test_every_good_item_has_records_and_every_bad_one_its_reason(built, folder):
    _, expected = folder
    items_with_records = {item_of(r["source_id"]) for r in built["records"]}
    rejected = collections.defaultdict(set)
    for rejection in built["report"]["rejected"]:
        rejected[item_of(rejection["source_id"])].add(rejection["reason"])
    duplicated = set(expected["duplicates"]) | set(expected["duplicates"].values())
    for item in expected["good"]:
        if item not in duplicated:
            assert item in items_with_records, (item, rejected.get(item))
    for item, reason in expected["bad"].items():
        assert rejected[item] == {reason}, item
        assert item not in items_with_records, item


def test_of_each_near_duplicate_pair_one_is_kept(built, folder):
    _, expected = folder
    items_with_records = {item_of(r["source_id"]) for r in built["records"]}
    rejections = built["report"]["rejected"]
    for copy, original in expected["duplicates"].items():
        kept, dropped = sorted([copy, original])  # the smaller source_id stays
        assert kept in items_with_records and dropped not in items_with_records
        reasons = {r["reason"] for r in rejections if item_of(r["source_id"]) == dropped}
        assert reasons == {"duplicate"}, dropped
        assert all(kept in r["detail"] for r in rejections if item_of(r["source_id"]) == dropped)


def test_records_have_their_bucket_shape_duration_caption_and_rate(built, folder):
    _, expected = folder
    cfg = tiny_config()
    buckets = built["manifest"]["buckets"]
    captions = {item: info["caption"] for item, info in expected["good"].items()}
    captions[COPY] = COPY_CAPTION
    for record in built["records"]:
        bucket = buckets[record["bucket"]]
        assert record["video"].shape == (bucket["frames"], bucket["height"], bucket["width"], 3)
        assert record["shard"].startswith(record["bucket"] + "/")
        assert record["fps"] == cfg.target_fps
        item = item_of(record["source_id"])
        assert record["caption"] == captions.get(item, record["caption"]) != ""
        if bucket["kind"] == "image":
            assert record["is_image"] and record["duration"] == 0.0
        else:
            assert cfg.min_seconds <= record["duration"] <= cfg.max_seconds
            native = expected["good"][expected["duplicates"].get(item, item)]["fps"]
            assert record["native_fps"] == pytest.approx(native, rel=0.01)


def test_no_record_crosses_a_scene_cut(built, folder):
    _, expected = folder
    checked = 0
    for record in built["records"]:
        item = item_of(record["source_id"])
        info = expected["good"].get(item)
        if info is None or info["kind"] != "video":
            continue
        first, last = map(int, record["source_id"].rsplit("#", 1)[1].split("-"))
        assert 0 <= first <= last < info["frames"]
        for cut_seconds in info["scene_cuts"]:
            cut = round(cut_seconds * info["fps"])  # the first frame of the new scene
            assert not first < cut <= last, (record["source_id"], cut)
            checked += 1
    assert checked >= 6  # the factory's cut videos all made clips


def test_counts_agree_with_the_records(built):
    report, manifest, records = built["report"], built["manifest"], built["records"]
    per_bucket = collections.Counter(r["bucket"] for r in records)
    assert report["per_bucket"] == dict(per_bucket)
    assert manifest["num_records"] == len(records) == sum(s["num_records"] for s in
                                                          manifest["shards"])
    assert report["images_written"] == sum(r["is_image"] for r in records)
    assert report["clips_written"] + report["images_written"] == len(records)
    assert sum(report["skipped"].values()) == len(report["rejected"])
    assert report["items_with_records"] == len({item_of(r["source_id"]) for r in records})
    # Every item seen either made a record or was (wholly or partly) rejected.
    rejected_items = {item_of(r["source_id"]) for r in report["rejected"]}
    assert report["seen"] <= report["items_with_records"] + len(rejected_items)
    for name, bucket in manifest["buckets"].items():
        assert bucket["num_records"] == per_bucket.get(name, 0)


def test_shards_hold_one_bucket_in_source_id_order(built):
    by_shard = collections.defaultdict(list)
    for record in built["records"]:
        by_shard[record["shard"]].append(record)
    assert set(by_shard) == {s["path"] for s in built["manifest"]["shards"]}
    for records in by_shard.values():
        assert len({r["bucket"] for r in records}) == 1
        ids = [r["source_id"] for r in records]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_the_same_build_again_is_already_built(built, folder):
    root, _ = folder
    manifest_before = (built["out"] / "manifest.json").stat().st_mtime_ns
    summary = build_dataset(f"folder:{root}", str(built["out"]), tiny_config(),
                            show_progress=False)
    assert summary["already_built"] is True
    assert summary == {**built["summary"], "already_built": True}
    assert (built["out"] / "manifest.json").stat().st_mtime_ns == manifest_before


def test_a_different_build_into_the_same_out_is_refused(built, folder):
    root, _ = folder
    files_before = sorted(p.name for p in built["out"].rglob("*"))
    with pytest.raises(FileExistsError, match=re.escape(str(built["out"]))):
        build_dataset(f"folder:{root}", str(built["out"]), tiny_config("records_per_shard=3"),
                      show_progress=False)
    assert sorted(p.name for p in built["out"].rglob("*")) == files_before


def test_a_non_empty_out_without_a_manifest_is_refused(folder, tmp_path):
    root, _ = folder
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no manifest.json"):
        build_dataset(f"folder:{root}", str(tmp_path), tiny_config(), show_progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_multi_process_runner_writes_the_same_records(built, folder, tmp_path):
    root, _ = folder
    out = tmp_path / "dataset"
    summary = _cli_build(root, out, "--direct_running_mode=multi_processing",
                         "--direct_num_workers=2")
    assert {record_key(r) for r in read_records(out)} == {record_key(r) for r in
                                                         built["records"]}
    report = json.loads((out / "report.json").read_text())

    def reasons(rejected):  # details may hold object reprs (addresses) of the decoder's
        return [(r["source_id"], r["reason"]) for r in rejected]
    assert reasons(report["rejected"]) == reasons(built["report"]["rejected"])
    assert summary == {**built["summary"], "out": str(out)}
