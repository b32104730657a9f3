"""stream/worker.py: what a worker makes sure of before it starts."""

import os

import pytest

from salescast.stream.worker import DataDirInUse, hold_data_dir


def test_a_data_dir_is_held_by_one_worker_at_a_time_and_the_refusal_says_what_to_do(tmp_path):
    data_dir = tmp_path / "var"
    held = hold_data_dir(data_dir)
    with pytest.raises(DataDirInUse) as refused:
        hold_data_dir(data_dir)
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and f"SALESCAST_DATA_DIR={data_dir}" in message
    assert "its own SALESCAST_DATA_DIR" in message
    held.close()  # what the end of the process does, kill -9 included
    hold_data_dir(data_dir).close()
