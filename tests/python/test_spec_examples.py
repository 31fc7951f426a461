"""Every Python example of the Data API reference ("Python API Usage" and the
migration notes), executed as written against real servers.

What the examples leave undefined the test supplies: the data (`large_tensor`,
`load_model_weights`, `model_shards`, ...) and the keys they assume exist
(`temp:cache`, `dataset1`...). Addresses are the only text replaced:
"localhost:9015" becomes the test server's, "localhost:9016" a second server's,
and the node names resolve through `--peer`. Where this machine has no GPU the
first GPU line fails with a clear exception, and the example then runs again
with GPU locations replaced by host ones, so every other line runs too. (The
"Data Pool Operations via HTTP" example runs in tests/cli/test_pool_cli.py.)
"""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from conftest import start
from gswarm.data import DataServer, DeviceUnavailableError

BASIC = '''
from gswarm.data import DataServer, get_storage, start_server

# Using DataServer client (recommended for remote access)
client = DataServer("localhost:9015")

# Write data to different locations
client.write("user:123", {"name": "john", "age": 30}, location="dram")
client.write("model:weights", large_tensor, location="device:0")
client.write("backup:data", important_data, location="disk")

# Move data to DRAM for reading
client.move("model:weights", "dram")

# Read data (only from DRAM)
user_data = client.read("user:123")
model_weights = client.read("model:weights")  # Now available after move

# Get location information
location_info = client.get_location("model:weights")
print(f"Data is in: {location_info['location']}")

# List all data locations
all_locations = client.list_locations()
for key, locations in all_locations.items():
    print(f"{key}: {[loc['location'] for loc in locations]}")

# Get enhanced statistics
stats = client.get_stats()
print(f"DRAM usage: {stats['dram_usage_percent']:.1f}%")
print(f"GPU 0 usage: {stats['gpu_stats'].get('device:0', {}).get('used', 0) / 1e9:.2f} GB")

# Send data to another server
success = client.send("user:123", "localhost:9016")

# GPU-to-GPU transfer with NVLink
success = client.send("model:weights", "node2:device:1", source_location="device:0")

# Release data from all locations
client.release("temp:cache")
'''

ADVANCED = '''
import asyncio
from gswarm.data import DataServer

client = DataServer("localhost:9015")

# Async move operations for better performance
async def move_data_async():
    # Move multiple datasets concurrently
    tasks = [
        client.move("dataset1", "device:0"),
        client.move("dataset2", "device:1"),
        client.move("dataset3", "pinned_dram")
    ]
    
    # Wait for all moves to complete
    results = await asyncio.gather(*tasks)
    return results

# Run async moves
results = asyncio.run(move_data_async())

# PD Separation Optimization Example
# Process A writes data to GPU
client.write("shared:tensor", tensor_data, location="device:0")

# Process B moves data to its GPU
client.move("shared:tensor", "device:1")

# Get read pointer for optimized access
location_info = client.get_location("shared:tensor")
read_pointer = location_info['locations'][0].get('read_pointer')
print(f"Optimized read pointer: {read_pointer}")
'''

COMPLEX = '''
import numpy as np
import torch

# Store complex data types with location control
client = DataServer("localhost:9015", use_extended_api=True)

# Store numpy arrays in pinned memory for faster GPU transfer
data = np.random.rand(1000, 1000)
client.write("model:weights", data, location="pinned_dram")

# Store PyTorch tensors directly on GPU
tensor = torch.randn(512, 768).cuda()
client.write("model:embeddings", tensor, location="device:0")

# Store large dataset on disk
large_dataset = np.random.rand(10000, 10000)
client.write("dataset:train", large_dataset, location="disk")

# Move data as needed
# Move weights to GPU for processing
client.move("model:weights", "device:0")

# Move embeddings to DRAM for CPU processing
client.move("model:embeddings", "dram")

# Now can read the embeddings
embeddings = client.read("model:embeddings")

# Store custom objects with optimal placement
model_config = {
    "name": "llama-7b",
    "layers": 32,
    "hidden_size": 4096,
    "device_placement": "device:0"
}
client.write("model:config", model_config, location="dram")
'''

NVLINK = '''
from gswarm.data import DataServer
import time

client = DataServer("localhost:9015")

# Store large model weights on GPU 0
model_weights = load_model_weights()  # Large tensor
client.write("model:llama-weights", model_weights, location="device:0")

# Direct GPU-to-GPU transfer to another node
# If NVLink is available, this bypasses CPU/DRAM completely
start_time = time.time()
result = client.send("model:llama-weights", "node2:device:1", source_location="device:0")
transfer_time = time.time() - start_time

print(f"Transfer completed in {transfer_time:.3f}s")
print(f"Method used: {result.get('method', 'unknown')}")

# Multi-node GPU cluster example
cluster_nodes = ["node1", "node2", "node3", "node4"]

# Distribute model shards across GPUs
for i, shard in enumerate(model_shards):
    source_device = f"device:{i % 2}"  # Alternate between GPU 0 and 1
    target_node = cluster_nodes[i % len(cluster_nodes)]
    target_device = f"device:{i % 4}"  # Distribute across 4 GPUs per node
    
    # Write shard to local GPU
    client.write(f"shard:{i}", shard, location=source_device)
    
    # Transfer to target node's GPU
    client.send(f"shard:{i}", f"{target_node}:{target_device}", source_location=source_device)

# Check NVLink availability
import torch
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        for j in range(i + 1, torch.cuda.device_count()):
            if torch.cuda.can_device_access_peer(i, j):
                print(f"NVLink available between GPU {i} and GPU {j}")
'''

DIRECT = '''
from gswarm.data import get_storage, set_max_memory
import asyncio

# Set DRAM limit (16GB)
set_max_memory(16 * 1024 * 1024 * 1024)

# Get storage instance
storage = get_storage()

# Direct operations with location control
storage.write("key1", "value1", location="dram")
storage.write("key2", large_array, location="device:0")
storage.write("key3", archive_data, location="disk")

# Move data to DRAM for reading
async def move_and_read():
    await storage.move_async("key2", "dram")
    value = storage.read("key2")
    return value

value = asyncio.run(move_and_read())

# Get location information
location = storage.get_location("key2")
all_locations = storage.list_locations()

# Enhanced statistics
stats = storage.get_stats()
print(f"DRAM: {stats['dram_keys']} keys, {stats['dram_usage_percent']:.1f}% used")
print(f"GPU devices: {stats['gpu_stats']}")
print(f"Disk: {stats['disk_keys']} keys, {stats['disk_usage'] / 1e9:.2f} GB")

# Clean up
storage.release("key1")  # Removes from all locations
'''

START_SERVER = '''
from gswarm.data import start_server
import threading

# Start server in a separate thread
def run_server():
    start_server(host="0.0.0.0", port=9015, max_mem_size=16*1024*1024*1024)

server_thread = threading.Thread(target=run_server, daemon=True)
server_thread.start()

# Now use the client
client = DataServer("localhost:9015")
client.write("test", "Hello, World!")
'''

MEMORY = '''
# Monitor memory usage
client = DataServer("localhost:9015")

def check_memory_usage():
    stats = client.get_stats()
    usage_percent = stats['usage_percent']
    
    if usage_percent > 80:
        print(f"Warning: Memory usage at {usage_percent:.1f}%")
        
    print(f"Memory: {stats['current_size'] / (1024**3):.2f} GB / {stats['max_size'] / (1024**3):.2f} GB")
    print(f"Keys: {stats['total_keys']} ({stats['persistent_keys']} persistent, {stats['volatile_keys']} volatile)")

# Set memory limit dynamically
client.set_max_memory(32 * 1024 * 1024 * 1024)  # 32GB
'''

MIGRATION = '''
# Old code
client.write("key", value, persist=True)

# New code
client.write("key", value, location="dram")  # or "disk" for persistence
'''

# GPU locations and names replaced by host ones for the run without GPUs.
WITHOUT_GPU = [
    (".cuda()", ""),
    ('"node2:device:1"', '"node2:dram"'),
    ('source_location="device:0"', 'source_location=None'),
    ("source_location=source_device", "source_location=None"),
    ('f"device:{i % 2}"', '"pinned_dram"'),
    ('f"device:{i % 4}"', '"disk"'),
    ('"device:0"', '"pinned_dram"'),
    ('"device:1"', '"disk"'),
]


def has_gpu(address):
    return bool(DataServer(address).get_stats()["gpu_stats"])


def execute(code, namespace, replacements):
    for old, new in replacements:
        code = code.replace(old, new)
    exec(compile(code, "<spec example>", "exec"), namespace)
    return namespace


def wait_until_idle(address):
    """Waits for moves a failed run left behind (asyncio.gather returns at the
    first failure; the other moves go on)."""
    client = DataServer(address)
    for _ in range(3000):
        stats = client.get_stats()
        if stats["active_moves"] == 0 and stats["queued_moves"] == 0:
            return
        time.sleep(0.01)
    raise AssertionError("moves still running after 30 s")


def run_example(code, namespace, replacements, gpu, address,
                gpu_failure=DeviceUnavailableError):
    """Runs `code` as written; without GPUs, checks that it fails at its first GPU
    line with `gpu_failure`, then runs it with host locations instead."""
    if gpu:
        return execute(code, dict(namespace), replacements)
    with pytest.raises(gpu_failure) as caught:
        execute(code, dict(namespace), replacements)
    assert "device" in str(caught.value) or "CUDA" in str(caught.value)
    wait_until_idle(address)
    return execute(code, dict(namespace), replacements + WITHOUT_GPU)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    node2 = start(tmp_path_factory, "node2", "--node-name", "node2")
    # node1..node4 of the cluster example: node1 is the first server itself.
    node1 = start(tmp_path_factory, "node1", "--node-name", "node1",
                  "--peer", f"node2={node2.address}", "--peer", f"node3={node2.address}",
                  "--peer", f"node4={node2.address}")
    yield node1, node2
    assert node1.stop() == 0 and node2.stop() == 0


def addresses(cluster):
    node1, node2 = cluster
    return [("localhost:9015", node1.address), ("localhost:9016", node2.address)]


def test_basic_kv_example(cluster):
    node1, node2 = cluster
    client = DataServer(node1.address)
    namespace = {"large_tensor": torch.randn(256, 256), "important_data": {"k": "v"}}

    def prepare():
        client.write("temp:cache", "cached")

    prepare()
    gpu = has_gpu(node1.address)
    if not gpu:
        with pytest.raises(DeviceUnavailableError):
            execute(BASIC, dict(namespace), addresses(cluster))
        prepare()
    ns = execute(BASIC, dict(namespace), addresses(cluster) + ([] if gpu else WITHOUT_GPU))
    assert ns["user_data"] == {"name": "john", "age": 30}
    assert torch.equal(ns["model_weights"], namespace["large_tensor"])
    assert ns["location_info"]["location"] == "dram"
    assert ns["success"]
    assert DataServer(node2.address).read("user:123") == {"name": "john", "age": 30}
    assert client.read("temp:cache") is None


def test_advanced_async_example(cluster):
    node1, _ = cluster
    client = DataServer(node1.address)
    for i in (1, 2, 3):
        client.write(f"dataset{i}", np.full(1000, i))
    namespace = {"tensor_data": torch.arange(100)}
    gpu = has_gpu(node1.address)
    ns = run_example(ADVANCED, namespace, addresses(cluster), gpu, node1.address)
    assert len(ns["results"]) == 3
    assert client.get_location("dataset3")["location"] == "pinned_dram"
    assert ns["read_pointer"] is not None


def test_complex_types_example(cluster):
    node1, _ = cluster
    namespace = {"DataServer": DataServer}
    gpu = has_gpu(node1.address)
    # Without CUDA, torch itself refuses .cuda() before gswarm is asked anything.
    ns = run_example(COMPLEX, namespace, addresses(cluster), gpu, node1.address,
                     gpu_failure=(AssertionError, RuntimeError))
    assert torch.equal(ns["embeddings"], ns["tensor"].cpu())
    client = DataServer(node1.address)
    assert client.read("model:config")["layers"] == 32
    assert client.get_location("dataset:train")["locations"][0]["size"] >= 800_000_000
    client.release("dataset:train")


def test_nvlink_example(cluster):
    node1, node2 = cluster
    namespace = {"load_model_weights": lambda: torch.randn(1024, 1024),
                 "model_shards": [np.full(4096, i, dtype=np.float32) for i in range(8)]}
    ns = run_example(NVLINK, namespace, addresses(cluster), has_gpu(node1.address),
                     node1.address)
    assert ns["result"]["method"] in ("standard", "nvlink", "p2p")
    target = DataServer(node2.address)
    for i, shard in enumerate(namespace["model_shards"]):
        if i % 4 == 0:
            continue  # node1 is the sending server itself
        target.move(f"shard:{i}", "dram")
        np.testing.assert_array_equal(target.read(f"shard:{i}"), shard)


def test_direct_storage_example(tmp_path):
    # get_storage() is per process: the example runs in a fresh python3.
    code = ("import numpy as np\n"
            "large_array = np.arange(1000.0)\n"
            "archive_data = {'archived': True}\n" + DIRECT +
            "\nassert (value == large_array).all()\n"
            "assert storage.read('key1') is None\n"
            "print('done')\n")
    without_gpu = code
    for old, new in WITHOUT_GPU:
        without_gpu = without_gpu.replace(old, new)
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    if "DeviceUnavailableError" in first.stderr:
        assert "device:0 is not available" in first.stderr
        first = subprocess.run([sys.executable, "-c", without_gpu], capture_output=True,
                               text=True, timeout=120, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("done")
    assert "DRAM: 2 keys" in first.stdout and "Disk: 1 keys" in first.stdout


def test_start_server_example(tmp_path):
    # In a fresh python3 of its own (the server lives as long as the process),
    # on a free port instead of 9015.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = START_SERVER.replace("9015", str(port)).replace(
        "max_mem_size=16*1024*1024*1024", f"max_mem_size=16*1024*1024*1024, disk_path={str(tmp_path)!r}")
    code = "from gswarm.data import DataServer\n" + code + \
        "\nassert client.read('test') == 'Hello, World!'\nprint('served')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "served"


def test_memory_management_example(cluster, capsys):
    node1, _ = cluster
    ns = execute(MEMORY, {"DataServer": DataServer}, addresses(cluster))
    assert DataServer(node1.address).get_stats()["max_size"] == 32 * 1024**3
    ns["check_memory_usage"]()
    out = capsys.readouterr().out
    assert "GB / 32.00 GB" in out and "persistent" in out


def test_migration_example(cluster):
    node1, _ = cluster
    client = DataServer(node1.address)
    with pytest.warns(DeprecationWarning, match="location="):
        execute(MIGRATION, {"client": client, "value": {"v": 1}}, [])
    assert client.get_location("key")["location"] == "dram"
    assert client.read("key") == {"v": 1}
