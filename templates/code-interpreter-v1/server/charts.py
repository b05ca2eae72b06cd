"""e2b/chart: the data a matplotlib Figure shows. Not written yet: no chart field."""


def figure_to_dict(figure):
    return None
