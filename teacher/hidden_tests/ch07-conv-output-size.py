"""Hidden tests of ch07-conv-output-size: fn(size, kernel, stride, padding, dilation) -> int."""

import random

from course import fpn


def test_random_layers(fn):
    rng = random.Random(7201)
    for _ in range(12):
        kernel, dilation = rng.choice([1, 3, 5, 7]), rng.randint(1, 4)
        size, stride, padding = rng.randint(dilation * (kernel - 1) + 1, 90), rng.randint(1, 4), \
            rng.randint(0, 4)
        got = fn(size, kernel, stride, padding, dilation)
        got = got.item() if hasattr(got, "item") else got
        want = fpn.conv_output_size(size, kernel, stride, padding, dilation)
        assert int(got) == want, (f"size {size}, kernel {kernel}, stride {stride}, padding "
                                  f"{padding}, dilation {dilation}: the output size is wrong")
