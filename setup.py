"""uec-rl: Unified Entropy Control for RL (arXiv 2604.14646) as a plugin recipe for stock verl 0.9.1."""

from setuptools import find_namespace_packages, setup

# verl 0.9.1 is the only version the CPU plugins and the trainer subclass are written against: they use verl
# internals (the rollout registry, TokenOutput fields, the V1 trainer's step structure). transformers is pinned to
# the range verl 0.9.1 itself declares. torch is deliberately absent: on CPU it is installed first as
# torch==2.13.0 (a CPU wheel); on GPU clusters it comes with vLLM (the `gpu` extra).
INSTALL_REQUIRES = [
    "verl[verl-core,math]==0.9.1",
    "transformers>=5.5.3,!=5.6.0,<5.11",
    "tokenizers",
    "pandas",
    "pyarrow>=19.0.0",
    "matplotlib",
    "pillow",
]

EXTRAS = {
    # What a GPU node needs on top, pinned as verl 0.9.1's own `vllm` extra pins it (wheel metadata): vLLM 0.24.0, the
    # CUDA torch 2.11.0 / torchvision 0.26.0 it requires, and transformers 5.9.0. flash-attn is deliberately absent:
    # flash-attn 2.8.3 is a source-only package on PyPI whose build imports torch, so pip cannot build it inside an
    # isolated build environment. docs/gpu.md installs it as its own step (a prebuilt wheel, or a build against the
    # installed torch with --no-build-isolation), and ATTN=sdpa runs the GPU scripts without it.
    # Never install this extra on a CPU-only machine: it pulls a CUDA torch.
    "gpu": ["vllm==0.24.0", "torch==2.11.0", "torchvision==0.26.0", "transformers==5.9.0"],
    "dev": ["pytest>=8", "ruff"],
}

setup(
    name="uec-rl",
    version="0.1.0",
    description="UEC-RL (targeted exploration + replay stabilizer) as a verl 0.9.1 plugin recipe",
    python_requires=">=3.10,<3.13",
    # Namespace discovery: the YAML folders under uec_recipe/config/ (the hydra config groups) are data folders that
    # Python can import as namespace packages; listing them as packages is what keeps setuptools from warning that
    # they "would be ignored", and package_data then ships their YAML.
    packages=find_namespace_packages(
        include=["uec_recipe", "uec_recipe.*", "uec_lab", "uec_lab.*", "data_prep", "data_prep.*"],
        exclude=["*.__pycache__"],
    ),
    package_data={"uec_recipe.config": ["*.yaml", "**/*.yaml"], "": ["*.yaml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"verl.plugins": ["uec_rl = uec_recipe.plugin"]},
)
