"""PQ of COCO panoptic files as they come in the wild, against panopticapi's ``pq_compute``
(re-written in panoptic_reference.py): the same numbers wherever panopticapi gives one, a clear
error (naming the file, the image and the segment) where the files cannot be evaluated, and a
note for whatever in the files bends the numbers. ``python -m course pq`` prints the same."""

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import course.pq
from course import cli
from course.panoptic_files import panoptic_quality_from_files, read_panoptic_png
from course.pq import id_to_rgb, pq_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import panoptic_reference as reference  # noqa: E402
from test_pq import random_image, random_set, write_coco_panoptic  # noqa: E402


def make_set(folder, seed=0, n=5, **kw):
    """A COCO panoptic set on disk: ``(gt_json, pred_json, gt_folder, pred_folder)``."""
    return write_coco_panoptic(folder, random_set(seed, n=n, **kw))


def edit_json(path, change):
    data = json.loads(Path(path).read_text())
    change(data)
    Path(path).write_text(json.dumps(data))


def resave(path, convert, **save):
    with Image.open(path) as image:
        image.load()
        convert(image).save(path, **save)


def as_palette(image):
    """The same colours as a palette ('P') PNG, what PNG optimisers make of few colours."""
    rgb = np.array(image)
    colours, index = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    assert len(colours) <= 256
    out = Image.fromarray(index.reshape(rgb.shape[:2]).astype(np.uint8), "P")
    out.putpalette(colours.flatten().tolist())
    return out


def assert_same_numbers(files):
    """Ours equal the reference's: each group's pq, sq, rq to 1e-12 and n, every class."""
    expected, counts = reference.pq_compute(*files)
    got = panoptic_quality_from_files(*files)
    for name in ("All", "Things", "Stuff"):
        assert got[name]["n"] == expected[name]["n"], name
        for key in ("pq", "sq", "rq"):
            assert abs(got[name][key] - expected[name][key]) <= 1e-12, (name, key)
    assert set(got["per_class"]) == set(expected["per_class"])
    for cat, c in got["per_class"].items():
        ref = counts.get(cat, reference.CategoryCounts())
        assert (c["tp"], c["fp"], c["fn"]) == (ref.tp, ref.fp, ref.fn), cat
        for key in ("pq", "sq", "rq"):
            assert abs(c[key] - expected["per_class"][cat][key]) <= 1e-12, (cat, key)
    return got


# --- well-made files ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_files_give_panopticapi_numbers(seed, tmp_path):
    got = assert_same_numbers(make_set(tmp_path, seed, n=8))
    assert got["notes"] == []
    assert got["All"]["n"] == 5 and 0 < got["All"]["pq"] < 1


def test_larger_images_with_many_segments(tmp_path):
    rng = np.random.default_rng(5)
    files = write_coco_panoptic(tmp_path, [random_image(rng, h=120, w=160) for _ in range(3)])
    assert_same_numbers(files)


def test_folders_default_to_the_json_path_without_json(tmp_path):
    # COCO's layout: annotations/panoptic_val2017.json beside annotations/panoptic_val2017/
    files = make_set(tmp_path)
    expected, _ = reference.pq_compute(*files)
    got = panoptic_quality_from_files(files[0], files[1])
    assert got["All"]["pq"] == pytest.approx(expected["All"]["pq"], abs=1e-12)


# --- files as they come in the wild: panopticapi gives a number, and so do we ---------------


def _rgba(files):
    for png in [*files[2].iterdir(), *files[3].iterdir()]:
        resave(png, lambda im: im.convert("RGBA"))


def _rgba_transparent(files):  # alpha 0 everywhere: panopticapi reads the colours all the same
    for png in files[3].iterdir():
        resave(png, lambda im: Image.fromarray(np.dstack([np.array(im), np.zeros(
            (im.height, im.width), np.uint8)]), "RGBA"))


def _annotations_in_another_order(files):
    edit_json(files[1], lambda j: j["annotations"].reverse())
    edit_json(files[0], lambda j: j["annotations"].insert(0, j["annotations"].pop()))


def _prediction_fields_panopticapi_does_not_read(files):
    def change(j):
        for ann in j["annotations"]:
            for s in ann["segments_info"]:  # detectron2 adds score / isthing / instance_id
                s.update(area=-3, iscrowd=5, score=0.25, isthing=True, instance_id=4)
                s.pop("bbox", None)
    edit_json(files[1], change)


def _no_images_and_no_prediction_categories(files):
    edit_json(files[0], lambda j: j.pop("images", None))
    edit_json(files[1], lambda j: j.pop("categories"))


def _png_content_under_a_jpg_name(files):
    for folder, path in ((files[2], files[0]), (files[3], files[1])):
        for png in folder.iterdir():
            png.rename(png.with_suffix(".jpg"))
        edit_json(path, lambda j: [a.update(file_name=a["file_name"].replace(".png", ".jpg"))
                                   for a in j["annotations"]])


def _prediction_file_names_of_their_own(files):
    for png in files[3].iterdir():
        png.rename(png.with_name("pred_" + png.name))
    edit_json(files[1], lambda j: [a.update(file_name="pred_" + a["file_name"])
                                   for a in j["annotations"]])


def _gt_id_above_rgb_listed_in_the_json(files):  # cannot be in the PNG: a missed segment
    edit_json(files[0], lambda j: j["annotations"][0]["segments_info"].append(
        {"id": 2**24 + 5, "category_id": 1, "iscrowd": 0, "area": 10}))


NUMBER_CASES = {
    "RGBA PNGs": (_rgba, []),
    "RGBA PNGs, alpha 0": (_rgba_transparent, []),
    "annotations in another order than the images": (_annotations_in_another_order, []),
    "prediction area / iscrowd / bbox absent or odd": (
        _prediction_fields_panopticapi_does_not_read, []),
    "no 'images', no prediction 'categories'": (_no_images_and_no_prediction_categories, []),
    "PNGs named .jpg": (_png_content_under_a_jpg_name, []),
    "predicted file names differ from the ground truth's": (
        _prediction_file_names_of_their_own, []),
    "a listed gt id above 256**3 - 1": (_gt_id_above_rgb_listed_in_the_json, []),
    "an extra predicted image": (
        lambda f: edit_json(f[1], lambda j: j["annotations"].append(
            {**j["annotations"][0], "image_id": 999})), ["images not in the ground truth"]),
    "a segment id listed twice in a prediction": (
        lambda f: edit_json(f[1], lambda j: j["annotations"][0]["segments_info"].append(
            dict(j["annotations"][0]["segments_info"][0]))), ["listed twice"]),
    "a segment id listed twice in the ground truth": (
        lambda f: edit_json(f[0], lambda j: j["annotations"][1]["segments_info"].insert(
            0, {**j["annotations"][1]["segments_info"][-1], "category_id": 2})),
        ["listed twice"]),
}


@pytest.mark.parametrize("name", NUMBER_CASES)
def test_wild_files_give_panopticapi_numbers(name, tmp_path):
    change, notes = NUMBER_CASES[name]
    files = make_set(tmp_path)
    change(files)
    got = assert_same_numbers(files)
    assert len(got["notes"]) == len(notes)
    for line, words in zip(got["notes"], notes):
        assert words in line


def test_the_json_area_of_a_gt_segment_is_used_and_noted(tmp_path):
    files = make_set(tmp_path, n=4)
    plain = panoptic_quality_from_files(*files)
    edit_json(files[0], lambda j: [s.update(area=s["area"] + 9) for a in j["annotations"]
                                   for s in a["segments_info"]])
    got = assert_same_numbers(files)
    assert got["All"]["pq"] < plain["All"]["pq"] - 1e-3  # larger unions: the json area counts
    assert len(got["notes"]) == 1 and "json area is not their pixel count" in got["notes"][0]
    assert re.search(r"segment \d+: area \d+, \d+ pixels", got["notes"][0])


def test_the_json_area_comparison_catches_counting_in_the_png(tmp_path, load_mutant):
    mutant = load_mutant(course.pq, "gt_area = np.where(gt.area >= 0, gt.area, o.gt_area)",
                         "gt_area = o.gt_area")
    image = random_set(3, n=1)[0]
    grown = (image[0], [{**s, "area": s["area"] + 5} for s in image[1]], *image[2:])
    assert course.pq.pq_stats(*grown).iou_sum.sum() < course.pq.pq_stats(*image).iou_sum.sum()
    assert mutant.pq_stats(*grown).iou_sum.sum() == mutant.pq_stats(*image).iou_sum.sum()


def test_gt_ids_the_json_does_not_list_are_neither_void_nor_missed(tmp_path):
    files = make_set(tmp_path, seed=2)

    def unlist_things(j):  # the first two thing segments of every image lose their entry
        for ann in j["annotations"]:
            things = [s for s in ann["segments_info"] if s["category_id"] in (1, 2, 3)
                      and not s["iscrowd"]]
            ann["segments_info"] = [s for s in ann["segments_info"] if s not in things[:2]]
    edit_json(files[0], unlist_things)
    got = assert_same_numbers(files)
    assert len(got["notes"]) == 1 and "not in segments_info" in got["notes"][0]


def test_a_gt_category_missing_from_categories_is_left_out(tmp_path):
    files = make_set(tmp_path, seed=1)
    edit_json(files[1], lambda j: [s.update(category_id=4) for a in j["annotations"]
                                   for s in a["segments_info"] if s["category_id"] == 5])
    edit_json(files[0], lambda j: j.update(
        categories=[c for c in j["categories"] if c["id"] != 5]))
    got = assert_same_numbers(files)
    assert 5 not in got["per_class"] and got["Stuff"]["n"] == 1


# --- files panopticapi cannot read, read here by the colours they show --------------------


@pytest.mark.parametrize("convert", ["P", "L", "1"])
def test_palette_and_grayscale_pngs_are_read_by_their_colours(convert, tmp_path):
    ids = np.zeros((6, 8), np.int64)
    ids[:3], ids[3:, :4] = 7 * 65793, 2 * 65793  # grey (7, 7, 7) and (2, 2, 2)
    if convert == "P":
        ids[:3] = 1  # (1, 0, 0)
    if convert == "1":
        ids = np.where(ids > 0, 256**3 - 1, 0)  # white and black
    path = tmp_path / "x.png"
    Image.fromarray(id_to_rgb(ids).numpy()).save(path)
    resave(path, as_palette if convert == "P" else lambda im: im.convert(convert))
    with Image.open(path) as image:
        assert image.mode == convert
    assert np.array_equal(read_panoptic_png(path).numpy(), ids)
    with pytest.raises(TypeError):  # panopticapi's rgb2id fails on a 2-D array
        reference.decode_png(path)


def test_an_optimised_prediction_set_gives_the_numbers_of_its_rgb_original(tmp_path):
    files = make_set(tmp_path, n=4)
    expected, _ = reference.pq_compute(*files)
    for png in files[3].iterdir():
        resave(png, as_palette)
    with pytest.raises(TypeError):
        reference.pq_compute(*files)
    got = panoptic_quality_from_files(*files)
    assert got["All"]["pq"] == pytest.approx(expected["All"]["pq"], abs=1e-12)


def test_gt_segments_without_iscrowd_or_area_are_read_and_noted(tmp_path):
    files = make_set(tmp_path, n=3, crowd=False)
    expected = panoptic_quality_from_files(*files)
    edit_json(files[0], lambda j: [(s.pop("iscrowd"), s.pop("area"))
                                   for a in j["annotations"] for s in a["segments_info"]])
    with pytest.raises(KeyError):
        reference.pq_compute(*files)
    got = panoptic_quality_from_files(*files)
    assert got["All"] == expected["All"]
    assert len(got["notes"]) == 2 and "'iscrowd'" in got["notes"][0]


# --- files that cannot be evaluated: a clear error ------------------------------------------


def _first_png(folder):
    return sorted(folder.iterdir())[0]


ERROR_CASES = {
    "no prediction for an image": (
        lambda f: edit_json(f[1], lambda j: j["annotations"].pop(2)),
        ValueError, r"pred\.json has no prediction for image_id 2 \(0002\.png\)"),
    "a predicted PNG id not in the json": (
        lambda f: edit_json(f[1], lambda j: j["annotations"][1]["segments_info"].pop()),
        ValueError, r"image_id 1 \(.*0001\.png.*\): segment id\(s\) \[\d+\] are in the "
                    r"predicted PNG but not in its segments_info"),
    "a predicted json id not in the PNG, above 256**3 - 1": (
        lambda f: edit_json(f[1], lambda j: j["annotations"][0]["segments_info"].append(
            {"id": 2**24 + 5, "category_id": 1})),
        ValueError, r"image_id 0 .*\[16777221\] are in segments_info but not in the PNG "
                    r"\(ids above 256\*\*3 - 1"),
    "a predicted category the ground truth does not know": (
        lambda f: edit_json(f[0], lambda j: j.update(
            categories=[c for c in j["categories"] if c["id"] != 5])),
        ValueError, r"predicted segment \d+ has category_id 5, which is not among"),
    "PNGs of different sizes": (
        lambda f: resave(_first_png(f[3]), lambda im: im.crop((0, 0, im.width - 1, im.height))),
        ValueError, r"image_id 0 .*differ in size, \[24, 32\] and \[24, 31\]"),
    "a JPEG": (
        lambda f: resave(_first_png(f[3]), lambda im: im, format="JPEG"),
        ValueError, r"pred/0000\.png is a JPEG"),
    "a 16-bit grayscale PNG": (
        lambda f: resave(_first_png(f[3]), lambda im: Image.fromarray(
            np.array(im)[..., 0].astype(np.uint16))),
        ValueError, r"pred/0000\.png is a grayscale image of more than 8 bits"),
    "file_name .jpg, the file .png": (
        lambda f: edit_json(f[1], lambda j: [a.update(file_name=a["file_name"][:-4] + ".jpg")
                                             for a in j["annotations"]]),
        FileNotFoundError, r"pred/0000\.jpg \(the folder has 0000\.png"),
    "file_name .png, the file .PNG": (
        lambda f: [p.rename(p.with_suffix(".PNG")) for p in f[3].iterdir()],
        FileNotFoundError, r"pred/0000\.png \(the folder has 0000\.PNG"),
    "the predicted folder missing": (
        lambda f: shutil.rmtree(f[3]), FileNotFoundError, r"predicted PNGs does not exist"),
    "a category without isthing": (
        lambda f: edit_json(f[0], lambda j: j["categories"][0].pop("isthing")),
        ValueError, r"gt\.json: category 1 \(c1\) has no 'isthing'"),
    "a segments_info entry without category_id": (
        lambda f: edit_json(f[1], lambda j: j["annotations"][3]["segments_info"][0].pop(
            "category_id")),
        ValueError, r"image_id 3 .*segments_info\[0\] must be a dict with 'id' and "
                    r"'category_id'"),
}


@pytest.mark.parametrize("name", ERROR_CASES)
def test_files_panopticapi_cannot_evaluate_give_a_clear_error(name, tmp_path):
    change, error, words = ERROR_CASES[name]
    files = make_set(tmp_path)
    change(files)
    with pytest.raises(Exception):  # noqa: B017 - panopticapi stops too (KeyError, ...)
        reference.pq_compute(*files)
    with pytest.raises(error, match=words):
        panoptic_quality_from_files(*files)


# --- python -m course pq ------------------------------------------------------------------


def test_the_command_prints_panopticapi_table(tmp_path, capsys):
    files = make_set(tmp_path, n=6)
    expected, _ = reference.pq_compute(*files)
    assert cli.main(["pq", "--gt-json", str(files[0]), "--pred-json", str(files[1])]) == 0
    out = capsys.readouterr()
    assert out.out == pq_table(expected) + "\n" and out.err == ""
    # panopticapi's own option names, folders given
    argv = ["pq", "--gt_json_file", str(files[0]), "--pred_json_file", str(files[1]),
            "--gt_folder", str(files[2]), "--pred_folder", str(files[3]), "--json"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("All", "Things", "Stuff"):
        assert report[name]["pq"] == pytest.approx(expected[name]["pq"], abs=1e-12)
        assert report[name]["n"] == expected[name]["n"]
    assert report["per_class"]["1"]["pq"] == pytest.approx(expected["per_class"][1]["pq"],
                                                           abs=1e-12)


def test_the_command_prints_per_class_lines_and_notes(tmp_path, capsys):
    files = make_set(tmp_path, n=4)
    edit_json(files[1], lambda j: j["annotations"].append({**j["annotations"][0],
                                                           "image_id": 77}))
    assert cli.main(["pq", "--gt-json", str(files[0]), "--pred-json", str(files[1]),
                     "--per-class"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert [line.split()[1] for line in lines[-5:]] == ["c1", "c2", "c3", "c4", "c5"]
    assert [line.split()[2] for line in lines[-5:]] == ["thing"] * 3 + ["stuff"] * 2
    assert out.err.startswith("note: 1 x predictions of images not in the ground truth")


@pytest.mark.parametrize("name", ["no prediction for an image", "file_name .jpg, the file .png",
                                  "a JPEG"])
def test_bad_files_end_the_command_with_one_line(name, tmp_path, capsys):
    files = make_set(tmp_path)
    ERROR_CASES[name][0](files)
    assert cli.main(["pq", "--gt-json", str(files[0]), "--pred-json", str(files[1])]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: ")
    assert len(out.err.strip().splitlines()) == 1
