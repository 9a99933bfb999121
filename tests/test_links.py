"""Lesson links: settings to a URL and back, with the same checks as the CLI; every lesson's link is usable."""

import pytest

from core.lessons import lessons
from core.links import LINK_SETTINGS, link_query, parse_link


def test_a_link_gives_back_exactly_the_settings_it_was_made_from():
    values = dict(dataset="shapes", preset="custom", epochs=1, lr=0.01, momentum=0.5, batch_size=16, conv_width=12,
                  conv2_width=16, schedule="one-cycle", nesterov=True, device="cpu", seed=7)
    link = parse_link(link_query(values, {"lr", "momentum"}))
    assert link.values == values and link.problems == [] and link.locked == {"lr", "momentum"}
    assert link_query(values)["lr"] == "0.01" and "folder" not in link_query(values)  # folder only with a folder
    assert parse_link(link_query({**values, "dataset": "folder", "folder": "/data/x"})).values["folder"] == "/data/x"


@pytest.mark.parametrize("name, text, reason", [
    ("lr", "abc", "not a number"), ("lr", "0", "learning rate must be > 0"), ("lr", "11", "at most 10"),
    ("momentum", "1.5", "below 1"), ("batch_size", "0", "batch size"), ("batch_size", "2.5", "not a number"),
    ("epochs", "5000", "epochs"), ("dataset", "imagenet", "choose one of"), ("preset", "turbo", "choose one of"),
    ("nesterov", "maybe", "true or false"), ("schedule", "cosine", "choose one of"), ("device", "tpu", "choose one"),
    ("conv_width", "-3", "conv width"), ("seed", "-1", "seed"),
])
def test_a_value_the_app_cannot_take_is_dropped_with_one_line(name, text, reason):
    link = parse_link({name: text, "momentum": "0.5"} if name != "momentum" else {name: text, "lr": "0.1"})
    assert name not in link.values and len(link.values) == 1  # the good value next to it is kept
    assert len(link.problems) == 1 and link.problems[0].startswith(f"{name}={text} was ignored")
    assert reason in link.problems[0]


def test_locks_take_setting_names_or_all_and_name_what_they_cannot_lock():
    assert parse_link({"lock": "all"}).locked == set(LINK_SETTINGS)
    link = parse_link({"lock": "lr,momentum,speed", "job": "abc", "present": "true"})
    assert link.locked == {"lr", "momentum"} and link.problems == [link.problems[0]] and "speed" in link.problems[0]
    assert "colour" in parse_link({"colour": "red"}).problems[0]  # an unknown name is reported, not used


def test_link_settings_make_the_round_trip_through_the_url():
    from core.config import preset_values

    values = dict(dataset="folder", folder="/data/pics", preset="fast", **preset_values("fast"), device="cpu", seed=3)
    link = parse_link(link_query(values, {"lr"}))
    assert link.problems == [] and link.values == values and link.locked == {"lr"}


@pytest.mark.parametrize("dataset", ["cifar10", "shapes"])
def test_every_lesson_link_is_usable_and_follows_the_tutorial(dataset):
    tour = lessons(dataset)
    assert [lesson.title for lesson in tour][:9] == [
        "1. The data", "2. The network's shapes", "3. Train it the tutorial's way", "4. Inside one step",
        "5. The learning rate", "6. Momentum", "7. Optimizers", "8. Overfitting",
        "9. Widen the network: CPU against GPU"]
    for number, lesson in enumerate(tour, 1):
        assert lesson.text and lesson.look_at and lesson.question.endswith("?") and lesson.links
        for link in lesson.links:
            assert link.page in ("train", "step", "data", "network", "speed", "runs", "board", "own")
            if link.page in ("train", "step"):
                parsed = parse_link(link.query())
                assert parsed.problems == [] and parsed.values["dataset"] == dataset
                assert parsed.locked == set(link.locked)
            if link.page == "train":  # the class board gathers a lesson's runs by its number
                assert parsed.school["lesson"] == number
    step = parse_link(tour[3].links[0].query())  # the Step page, the learning rate held for the lesson's question
    assert tour[3].links[0].page == "step" and step.locked == {"lr"} and step.values["lr"] == 0.001
    rates = [parse_link(link.query()).values["lr"] for link in tour[4].links]
    assert max(rates) == 10 and min(rates) == 0.0001  # too high and too low
    assert {parse_link(link.query()).values["momentum"] for link in tour[5].links if link.page == "train"} == {0.0, 0.9}
    assert tour[5].links[-1].page == "runs"  # then compared, side by side
    trained = [parse_link(link.query()).values for link in tour[6].links if link.page == "train"]
    assert [(v["optimizer"], v["momentum"] if v["optimizer"] == "sgd" else None) for v in trained] == [
        ("sgd", 0.0), ("sgd", 0.9), ("adam", None)] and tour[6].links[-1].page == "runs"
    # overfitting: few images, many epochs; then the same with flips and crops; then your own pictures
    overfit = [parse_link(link.query()).values for link in tour[7].links if link.page == "train"]
    assert [(v["train_images"], v["epochs"], v.get("augment", False)) for v in overfit] == [(500, 30, False),
                                                                                            (500, 30, True)]
    assert tour[7].links[-1].page == "own"


def test_the_lessons_run_on_an_own_dataset_with_all_its_pictures():
    tour = lessons("own:fruit", classes=3)
    assert "your own pictures, the dataset fruit (3 classes)" in tour[0].text
    assert tour[0].links[0].url() == "data?dataset=own&own=fruit"  # the Data page shows its pictures
    for lesson in tour:
        for link in lesson.links:
            if link.page in ("train", "step"):
                parsed = parse_link(link.query())
                assert parsed.problems == [] and (parsed.values["dataset"], parsed.values["own"]) == ("own", "fruit")
                if "dataset" in parsed.locked:
                    assert "own" in parsed.locked
    overfit = [parse_link(link.query()).values for link in tour[7].links if link.page == "train"]
    assert [(v.get("train_images", 0), v["epochs"], v.get("augment", False)) for v in overfit] == [
        (0, 30, False), (0, 30, True)]  # all of its few dozen pictures a class
    assert tour[7].links[-1].url() == "own?own=fruit"
    assert "ln(3) = 1.10" in tour[2].text and "(33%)" in tour[2].question  # its words count its classes


def test_without_a_gpu_the_cpu_against_gpu_lesson_asks_what_this_machine_can_answer():
    widen = lambda gpu: next(x for x in lessons("shapes", gpu=gpu) if "CPU against GPU" in x.title)
    assert "thread" in widen(False).question and "no GPU" in widen(False).look_at
    assert "faster device" in widen(True).question
