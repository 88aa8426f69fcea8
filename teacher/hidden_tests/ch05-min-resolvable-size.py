"""Hidden tests of ch05-min-resolvable-size: fn(stride, coverage) -> int."""

from course import data


def test_other_strides_and_coverages(fn):
    for stride, coverage in ((5, 0.5), (12, 0.5), (24, 0.3), (10, 0.6), (2, 0.1)):
        got = fn(stride, coverage)
        got = got.item() if hasattr(got, "item") else got
        want = data.min_resolvable_size(stride, coverage)
        assert float(got) == float(int(got)), "the size is a whole number of pixels"
        assert int(got) == want, (f"stride {stride}, coverage {coverage}: the size is too "
                                  f"{'large' if int(got) > want else 'small'}")
