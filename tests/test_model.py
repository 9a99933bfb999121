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


def test_uploads_are_checked_and_prepared_as_the_network_sees_them():
    import io

    from PIL import Image

    from core.evaluate import MAX_UPLOAD_BYTES, UploadError, prepare_upload

    buf = io.BytesIO()
    Image.new("RGB", (200, 100), (255, 0, 0)).save(buf, "PNG")
    image = prepare_upload(buf.getvalue(), 32, 3)
    assert image.shape == (1, 3, 32, 32) and image[0, :, 5, 5].tolist() == [255, 0, 0]
    assert prepare_upload(buf.getvalue(), 28, 1).shape == (1, 1, 28, 28)
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    for data, message in ((b"not an image", "not a readable image"), (gif.getvalue(), "PNG or JPEG"),
                          (b"\x89PNG" + bytes(MAX_UPLOAD_BYTES), "under 8 MB"),
                          (buf.getvalue()[:60], "not a readable image .damaged")):
        with pytest.raises(UploadError, match=message) as error:
            prepare_upload(data, 32, 3)
        assert "0x" not in str(error.value) and "BytesIO" not in str(error.value)  # a student's words only


def test_selection_of_examples_and_top_losses():
    from core.evaluate import select_examples, top_losses

    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    predicted = torch.tensor([0, 2, 2, 1, 1, 0])
    assert sorted(select_examples(labels, predicted, 10, only_mistakes=True).tolist()) == [1, 3, 5]
    assert select_examples(labels, predicted, 10, true_class=2, predicted_class=0).tolist() == [5]
    assert len(select_examples(labels, predicted, 2)) == 2
    assert torch.equal(select_examples(labels, predicted, 3, seed=4), select_examples(labels, predicted, 3, seed=4))
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.1, 0.1, 0.8], [0.4, 0.6, 0.0], [0.1, 0.8, 0.1],
                          [0.99, 0.0, 0.01]])
    assert top_losses(probs, labels, 10).tolist() == [5, 1, 3]  # most confident mistakes first, mistakes only
