import pytest

from core.config import PRESETS, ConfigError, TrainConfig, preset
from tests.conftest import ROOT


def test_defaults_are_the_tutorial():
    c = TrainConfig()
    assert (c.batch_size, c.lr, c.momentum, c.epochs, c.conv_width, c.conv2_width) == (4, 0.001, 0.9, 2, 6, 16)
    assert preset("tutorial") == TrainConfig()


def test_preset_with_overrides():
    c = preset("fast", epochs=1, dataset="shapes")
    assert c.epochs == 1 and c.dataset == "shapes"
    assert c.batch_size == PRESETS["fast"]["batch_size"]


@pytest.mark.parametrize("change, message", [
    (dict(lr=0), "learning rate must be > 0 and at most 10"),
    (dict(lr=11), "learning rate must be > 0 and at most 10"),
    (dict(lr=float("nan")), "learning rate must be > 0 and at most 10"),
    (dict(momentum=1.0), "momentum must be at least 0 and below 1"),
    (dict(momentum=-0.1), "momentum must be at least 0 and below 1"),
    (dict(batch_size=0), "batch size must be a whole number from 1 to 4096"),
    (dict(batch_size=2.5), "batch size must be a whole number"),
    (dict(batch_size=True), "batch size must be a whole number"),
    (dict(epochs=0), "epochs must be a whole number from 1 to 1000"),
    (dict(conv_width=0), "conv width must be a whole number from 1 to 1024"),
    (dict(conv2_width=5000), "conv2 width must be a whole number"),
    (dict(device="tpu"), "device must be one of auto, cpu, cuda, mps"),
    (dict(dataset="imagenet"), "dataset must be one of cifar10, mnist, fashion-mnist, shapes, folder:PATH or own:NAME"),
    (dict(dataset="folder:  "), "folder: needs a path"),
    (dict(seed=-1), "seed must be a whole number"),
    (dict(max_steps=0), "max steps must be a positive whole number"),
    (dict(target_accuracy=1.5), "target accuracy must be a fraction above 0 and at most 1"),
])
def test_bad_values_are_rejected_with_a_clear_message(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig(**change)


def test_unknown_preset_and_unknown_setting():
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("turbo")
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"lr": 0.1, "colour": "red"})


def test_round_trip_and_log_interval():
    c = TrainConfig(dataset="shapes", batch_size=64, target_accuracy=0.5)
    assert TrainConfig.from_dict(c.to_dict()) == c
    assert c.steps_per_log(782) == 16  # ~50 points an epoch
    assert TrainConfig().steps_per_log(12500) == 250  # CIFAR-10 at batch 4: a point every 1000 images
    assert TrainConfig(batch_size=4).steps_per_log(10**6) == 500  # never more than 2000 images a point
    assert TrainConfig(log_interval=7).steps_per_log(100) == 7
    assert TrainConfig(batch_size=4096).steps_per_log(13) == 1


def test_command_line_reproduces_the_config():
    from core.config import command_line
    from core.train import build_parser, config_from_args

    c = TrainConfig(dataset="folder:/data/my images", lr=0.02, batch_size=64, conv_width=12, schedule="one-cycle")
    text = command_line(c)
    assert text.startswith("python -m core.train --dataset 'folder:/data/my images'") and "--width 12" in text
    import shlex
    args = build_parser().parse_args(shlex.split(text)[3:])
    assert config_from_args(args) == c


def test_one_schema_gives_the_flags_the_checks_the_command_line_and_the_flag_table():
    """TrainConfig's fields say their flag, help, label and check once; argparse, validation, the command line
    the page shows and the command line's flag table (docs/command-line.md) all come from there."""
    import dataclasses
    import shlex

    from core.config import SETTINGS, command_line, flag_table, setting_label, setting_problem
    from core.train import build_parser, config_from_args
    from tests.conftest import ROOT

    assert set(SETTINGS) == {f.name for f in dataclasses.fields(TrainConfig)}
    help_text = build_parser().format_help()
    for name, f in SETTINGS.items():
        assert f.metadata["flag"] in help_text and setting_label(name), name
    # every setting that differs from its default makes the round trip through the command line
    c = TrainConfig(dataset="shapes", data_dir="/tmp/d", epochs=3, lr=0.05, momentum=0.5, nesterov=True,
                    schedule="one-cycle", batch_size=32, conv_width=7, conv2_width=9, device="cpu", seed=3,
                    threads=1, log_interval=5, max_steps=100, target_accuracy=0.6, nproc=2, train_images=500,
                    augment=True)
    other = c.replace(nesterov=False, optimizer="rmsprop")  # Nesterov momentum is SGD's alone
    assert all(getattr(c, n) != f.default or getattr(other, n) != f.default for n, f in SETTINGS.items()
               if n != "dataset")
    for config in (c, other):
        assert config_from_args(build_parser().parse_args(shlex.split(command_line(config))[3:])) == config
    assert setting_problem("batch_size", 0) == "batch size must be a whole number from 1 to 4096, not 0"
    assert setting_problem("batch_size", 64) is None
    assert flag_table() in (ROOT / "docs" / "command-line.md").read_text(), \
        "docs/command-line.md's flag table: paste core.config.flag_table()"


def test_every_numeric_settings_bounds_are_data_the_pages_and_checks_read():
    """The bounds a config allows, the narrower ones of the page's controls, and the checkpoint bounds are one set
    of numbers (core/config.py): a page or a parser never writes them again."""
    from core.config import SETTINGS, Range, bounds, page_range
    from core.runs import MODEL_BOUNDS

    for name in ("epochs", "lr", "momentum", "batch_size", "conv_width", "conv2_width", "nproc", "seed", "threads"):
        assert isinstance(SETTINGS[name].metadata["check"], Range), name
    assert bounds("conv_width") == MODEL_BOUNDS["conv_width"] == (1, 1024)
    assert page_range("conv_width") == (1, 256) and page_range("epochs") == (1, 30)
    assert page_range("epochs", 50) == (1, 50) and page_range("epochs", 5000) == (1, 30)  # a link's, if allowed
    assert page_range("momentum") == (0.0, 0.99) and bounds("momentum") == (0, 1)
    with pytest.raises(ConfigError, match="momentum must be at least 0 and below 1"):
        TrainConfig(momentum=1)
    TrainConfig(momentum=0.995, lr=10)  # allowed, beyond the page's control: a link drops it with a line
    with pytest.raises(ConfigError, match="learning rate must be > 0"):
        TrainConfig(lr=0)
    page = " ".join((ROOT / "pages" / "train.py").read_text().split())
    assert "1, 256" not in page and "0.99" not in page and "2**31" not in page
