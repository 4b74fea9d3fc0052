# rmldnn_py container image (SPEC §10): Python + PyTorch (CUDA runtime, cuDNN), torchvision, h5py,
# Open MPI + mpi4py and rmldnn_py; `rmldnn` and `mpirun` on PATH; no entrypoint.
#
#   docker build -t rmldnn_py:latest .
#   docker run --gpus all -u $(id -u):$(id -g) -v $PWD:/work -w /work --rm rmldnn_py:latest \
#       mpirun -np 4 rmldnn --config=./config.json
#
# See docs/DISTRIBUTED.md. The base image brings Python 3.11, torch and torchvision built for
# CUDA 12.4 / cuDNN 9; any pytorch/pytorch *-runtime tag with torch >= 2.1 works (BASE_IMAGE).
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Open MPI from the distribution (mpirun, and the headers to build mpi4py against it).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev gcc g++ \
    && rm -rf /var/lib/apt/lists/*

# mpi4py compiled against that Open MPI (never a wheel bundling another MPI).
# hadolint ignore=DL3013
RUN python -m pip install --no-cache-dir --no-binary=mpi4py mpi4py

# The package itself; torch/torchvision of the base image satisfy its requirements.
WORKDIR /opt/rmldnn_py
COPY pyproject.toml README.md ./
COPY rmldnn_py ./rmldnn_py
RUN python -m pip install --no-cache-dir . \
    && rmldnn --version \
    && python -c "import mpi4py, h5py, torchvision, rmldnn_py" \
    && command -v mpirun

# Runs as any uid without a home directory: caches go to /tmp, nothing is written to $HOME.
# Open MPI inside a container: allow root (the default user of `docker run`), and no
# ptrace-based single-copy shared memory (so --cap-add=SYS_PTRACE is not required).
ENV HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TORCH_HOME=/tmp/.cache/torch \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMPI_ALLOW_RUN_AS_ROOT=1 \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_btl_vader_single_copy_mechanism=none \
    OMPI_MCA_rmaps_base_oversubscribe=1

WORKDIR /work
# no ENTRYPOINT / CMD: the command follows the image name, as with rocketml/rmldnn
