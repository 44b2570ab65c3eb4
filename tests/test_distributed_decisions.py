"""Sequence-parallel runs: with a process group, every rank takes the same decision at every step.

Two CPU processes over gloo run the same trajectory, rank 1 with perturbed numbers, so that on
their own they would decide differently."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import easycache
from easycache import EasyCacheConfig
from test_rule import ToyDenoiser, euler, shifted_timesteps


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decisions_on_rank(rank, world, port, synced, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        timesteps = shifted_timesteps(30)
        model = ToyDenoiser(seed=0)
        if rank == 1:  # a rank whose numbers drift: its own rule would skip different steps
            with torch.no_grad():
                model.mix.mul_(1.6)
        cfg = EasyCacheConfig(0.08, 3, 30, process_group=dist.group.WORLD if synced else None)
        cache = easycache.apply_easycache(model, cfg)
        x = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
        for s, t in enumerate(timesteps):
            x = euler(x, model(x, torch.tensor([t]))[0], s, timesteps)
        queue.put((rank, [r.computed for r in cache.records]))
    finally:
        dist.destroy_process_group()


def run_two_ranks(synced):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=decisions_on_rank, args=(r, 2, port, synced, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results[0], results[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this torch build")
def test_ranks_agree_only_when_synced():
    alone_0, alone_1 = run_two_ranks(synced=False)
    assert alone_0 != alone_1, "the perturbation must make the ranks disagree on their own"
    synced_0, synced_1 = run_two_ranks(synced=True)
    assert synced_0 == synced_1
    assert not all(synced_0), "the synced ranks still skip steps"
