import pytest
import torch

from core.model import ModelArgs, Net, conv_output_size, count_parameters, layer_table


def test_tutorial_network_has_the_tutorials_parameter_count():
    net = Net()
    assert count_parameters(net) == 62006
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert net.fc1.in_features == 16 * 5 * 5


def test_flatten_size_follows_the_formula():
    assert conv_output_size(32) == 28 and conv_output_size(14) == 10
    mnist = Net(ModelArgs(in_channels=1, image_size=28, num_classes=10))
    assert mnist.fc1.in_features == 16 * 4 * 4
    assert mnist(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("args", [ModelArgs(), ModelArgs(conv_width=12), ModelArgs(conv_width=128, conv2_width=64),
                                  ModelArgs(in_channels=1, image_size=28, num_classes=3)])
def test_layer_table_agrees_with_the_real_network(args):
    net = Net(args)
    rows = layer_table(args)
    assert sum(r["parameters"] for r in rows) == count_parameters(net)
    maps = net.feature_maps(torch.zeros(1, args.in_channels, args.image_size, args.image_size))
    by_name = {r["layer"]: r for r in rows}
    assert by_name["conv1"]["shape"] == tuple(maps["conv1"].shape[1:])
    assert by_name["conv2"]["shape"] == tuple(maps["conv2"].shape[1:])
    assert by_name["fc3"]["shape"] == (args.num_classes,)


def test_layer_table_shows_the_tutorial_arithmetic():
    rows = {r["layer"]: r for r in layer_table(ModelArgs(conv_width=12))}
    assert rows["conv1"]["shape"] == (12, 28, 28)
    assert rows["conv1"]["formula"] == "((32 - 5 + 2·0) / 1) + 1 = 28"
    assert rows["pool1"]["shape"] == (12, 14, 14)
    assert rows["flatten"]["shape"] == (400,)
    assert rows["conv1"]["mult_adds"] == 12 * 28 * 28 * 3 * 25


def test_too_small_images_are_a_clear_error():
    with pytest.raises(ValueError, match="at least 16x16"):
        Net(ModelArgs(image_size=12))
