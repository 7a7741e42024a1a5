"""The public surface is pinned: an accidental export or removal fails here."""

import subprocess
import sys

import gmmpyro

PUBLIC = [
    "ConditionalDensity",
    "ConvergenceWarning",
    "DensityModel",
    "FitConfig",
    "GMMDistribution",
    "GmmpyroWarning",
    "LatentProjection",
    "MixtureComponents",
    "NUTSConfig",
    "NetworkConfig",
    "Observable",
    "OutOfRangeWarning",
    "ParquetEvents",
    "PoissonTerm",
    "PreparedEvents",
    "TrainingConfig",
    "TrainingError",
    "TrainingHistory",
    "__version__",
    "bayes",
    "campaigns",
    "designs",
    "exceptions",
    "observables",
    "plotting",
    "profile",
    "projection",
    "protocols",
    "toy",
    "validation",
]


def test_public_surface():
    assert dir(gmmpyro) == sorted(PUBLIC)
    assert sorted(gmmpyro.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(gmmpyro, name) is not None


def test_inference_functions_are_reachable():
    assert gmmpyro.bayes.sample_posterior is gmmpyro.inference.bayes.sample_posterior
    assert gmmpyro.profile.scan is gmmpyro.inference.profile.scan
    assert gmmpyro.FitConfig is gmmpyro.profile.FitConfig
    assert gmmpyro.NUTSConfig is gmmpyro.bayes.NUTSConfig
    assert callable(gmmpyro.plotting.compare)


def test_the_frequentist_path_imports_no_pyro():
    # in a fresh interpreter: fits and scans run without loading Pyro; the Bayesian names load it
    code = (
        "import sys, gmmpyro; from gmmpyro.toy import ToyModel; "
        "toy = ToyModel(); x = toy.sample(50, [0.5, 0.0], seed=0); "
        "gmmpyro.profile.scan(toy, x, {'cx': (0.0, 1.0, 5)}, profile=['cy']); "
        "import gmmpyro.inference.scan, gmmpyro.validation; "
        "assert 'pyro' not in sys.modules, 'pyro imported'; "
        "gmmpyro.NUTSConfig; assert 'pyro' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_changes_no_global_state():
    # in a fresh interpreter: importing gmmpyro leaves torch's validation flag, the default
    # dtype and matplotlib unloaded
    code = (
        "import torch; flag = torch.distributions.Distribution._validate_args; "
        "import gmmpyro, sys; "
        "assert torch.distributions.Distribution._validate_args == flag; "
        "assert torch.get_default_dtype() == torch.float32; "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
