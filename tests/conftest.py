import matplotlib

matplotlib.use("Agg")  # no screen here; tests that draw only check that drawing works
