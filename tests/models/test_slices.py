"""models/slices.py on hand-made inputs, and models.evaluate's slices on a constructed dataset where every user's
slice membership is known."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import TINY_CONFIG, python_job
from models.slices import HEAD, TAIL, TORSO, SliceInputs, item_popularity_classes, slice_masks

DAY = 86_400


def test_popularity_classes_by_share_of_train_volume():
    # Volume 16: item 1 carries the first 50% (head), items 2-3 the next 37.5% (starting before 80%: torso),
    # items 4-5 start at 87.5% and 93.75% (tail); items never in train are tail.
    counts = np.array([8, 4, 2, 1, 1, 0, 0])
    assert item_popularity_classes(counts).tolist() == [HEAD, TORSO, TORSO, TAIL, TAIL, TAIL, TAIL]
    # The item straddling the 20% boundary is head; equal counts keep index order.
    assert item_popularity_classes(np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1])).tolist() == [HEAD] * 2 + [TORSO] * 6 + [
        TAIL
    ] * 2
    assert item_popularity_classes(np.zeros(3)).tolist() == [TAIL] * 3


def test_masks_partition_activity_new_items_and_recency():
    rng = np.random.default_rng(0)
    n = 500
    hist = rng.integers(0, 40, n)
    since = np.where(hist == 0, np.nan, rng.exponential(10 * DAY, n))
    has_class = rng.random((n, 3)) < 0.5
    has_class[~has_class.any(axis=1), 2] = True
    masks, definitions = slice_masks(SliceInputs(hist, since, has_class, rng.random(n) < 0.2))
    for dimension in ("activity", "history", "new_items", "recency"):
        members = np.stack([m for name, m in masks.items() if name.startswith(dimension + "=")])
        assert (members.sum(axis=0) == 1).all(), dimension  # every user in exactly one slice of the dimension
    median = definitions["activity"]["light_max_history"]
    assert median == np.median(hist[hist > 0])
    assert (hist[masks["activity=light"]] <= median).all() and (hist[masks["activity=heavy"]] > median).all()
    assert (masks["activity=cold"] == masks["recency=none"]).all()
    popularity = np.stack([masks[f"popularity={c}"] for c in ("head", "torso", "tail")])
    assert (popularity.sum(axis=0) >= 1).all() and (popularity.sum(axis=0) > 1).any()  # a cover, overlapping


def write_split(path, name, rows):
    rows = sorted(rows, key=lambda r: (r[2], r[0], r[1]))
    cols = list(zip(*rows)) if rows else [[], [], []]
    pq.write_table(pa.table({
        "user_idx": pa.array(cols[0], pa.int32()), "item_idx": pa.array(cols[1], pa.int32()),
        "ts": pa.array(cols[2], pa.int64()), "rating": pa.array([None] * len(rows), pa.float32()),
    }), path / f"{name}.parquet")
    return len(rows)


def constructed_dataset(path):
    """Ten items; train counts item 1: 8, item 2: 4, item 3: 2, items 4-5: 1, items 6-10: 0, so head = {1},
    torso = {2, 3}, tail = {4..10}. Test window starts at day 100. Users 0-4 are evaluated:
      u0  history [2 @ day 99.5]          test {1}     light, head,         not new, <1d
      u1  history [3 @ day 97]            test {4}     light, tail,         not new, 1-7d
      u2  history [1 @ day 80]            test {6}     light, tail,         new,     7-30d
      u3  history [1, 4, 5 @ days 10-30]  test {2, 7}  heavy, torso + tail, new,     >30d
      u4  no history                      test {1}     cold,  head,         not new, none
    Users 5-15 only fill the train counts."""
    t = lambda day: 1_700_000_000 + int(day * DAY)  # noqa: E731
    train = [(2, 1, t(80)), (3, 1, t(10)), (3, 4, t(20)), (3, 5, t(30))]
    filler = [1] * 6 + [2] * 4 + [3] * 2
    train += [(5 + i, item, t(40 + i)) for i, item in enumerate(filler)]
    valid = [(0, 2, t(99.5)), (1, 3, t(97))]
    test = [(0, 1, t(100)), (1, 4, t(100.1)), (2, 6, t(100.2)), (3, 2, t(100.3)), (3, 7, t(100.4)), (4, 1, t(101))]
    path.mkdir(parents=True)
    counts = {"users": 5 + len(filler), "items": 10}
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        counts[name] = write_split(path, name, rows)
    (path / "manifest.json").write_text(json.dumps({"counts": counts, "split": {"testStart": t(100)}}))
    return path


EXPECTED = {
    "activity=cold": [4], "activity=light": [0, 1, 2], "activity=heavy": [3],
    "history=some": [0, 1, 2, 3], "history=none": [4],
    "popularity=head": [0, 4], "popularity=torso": [3], "popularity=tail": [1, 2, 3],
    "new_items=yes": [2, 3], "new_items=no": [0, 1, 4],
    "recency=<1d": [0], "recency=1-7d": [1], "recency=7-30d": [2], "recency=>30d": [3], "recency=none": [4],
}


def test_evaluate_slices_on_a_constructed_dataset(tmp_path):
    data = constructed_dataset(tmp_path / "data")
    train = python_job("models.train", "--data-dir", str(data), "--out-dir", str(tmp_path / "train"),
                       "--config-json", json.dumps({**TINY_CONFIG, "batch_size": 4}))
    assert train.returncode == 0, train.stderr
    report_path = tmp_path / "report.json"
    run = python_job("models.evaluate", "--data-dir", str(data), "--model", train.last["model_path"],
                     "--out", str(report_path), "--min-slice-users", "2", "--bootstrap", "200")
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())
    assert report["n_users"] == 5 and report["n_cold_users"] == 1
    assert {name: s["n_users"] for name, s in report["slices"].items()} == {k: len(v) for k, v in EXPECTED.items()}
    assert {name for name, s in report["slices"].items() if s["small"]} == {
        name for name, users in EXPECTED.items() if len(users) < 2
    }
    assert sorted(run.last["small_slices"]) == sorted(n for n, u in EXPECTED.items() if len(u) < 2)
    # Per-slice point estimates are means over exactly the expected users: check with popularity, whose ranking
    # follows from the train counts (1, 2, 3, 4, 5, 6, ... with the user's history items removed).
    for name, users in EXPECTED.items():
        s = report["slices"][name]
        assert s["dimension"] + "=" + s["value"] == name
        iv = s["intervals"]["popularity"]["hr@10"]
        assert iv["point"] == 1.0 and iv["lo"] == 1.0 and iv["hi"] == 1.0  # 10 items: every test item in the top 10
    rec = report["slices"]["recency=1-7d"]["intervals"]["popularity"]["mrr"]["point"]
    assert rec == 1 / 3  # u1: history {3}; ranking 1, 2, 4: item 4 at rank 3
    new = report["slices"]["new_items=yes"]["intervals"]["popularity"]["mrr"]["point"]
    # u2: history {1}; ranking 2, 3, 4, 5, 6: item 6 at rank 5. u3: history {1, 4, 5}; item 2 ranks first.
    assert new == (1 / 5 + 1) / 2
    assert report["slice_definitions"]["activity"]["light_max_history"] == 1
