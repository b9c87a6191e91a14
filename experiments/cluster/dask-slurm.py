"""A dask-jobqueue SLURM cluster for `gwpe generate` (pip install dask-jobqueue on the login node).

    python experiments/cluster/dask-slurm.py 64     # 64 single-core workers; prints the scheduler address
    # then, in the profile:  h22.compute.scheduler_address: tcp://<address printed>   (same for strain.compute)
    gwpe generate h22 --params experiments/paper.yaml

Workers must see the project directory on a shared file system (gwpe sends absolute store paths).
"""

import sys
import time

from dask_jobqueue import SLURMCluster

workers = int(sys.argv[1]) if len(sys.argv) > 1 else 16
cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="24:00:00", job_name="gwpe-dask",
                       job_extra_directives=["--requeue"], scheduler_options={"dashboard_address": ":8787"})
cluster.scale(workers)
print(f"scheduler: {cluster.scheduler_address}  dashboard: {cluster.dashboard_link}", flush=True)
try:
    while True:
        time.sleep(60)
except KeyboardInterrupt:
    cluster.close()
