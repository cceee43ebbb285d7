#!/usr/bin/env bash
# A one-node SLURM on 127.0.0.1 for tests: munged, slurmctld and slurmd as plain processes (no systemd),
# everything (config, keys, sockets, state, logs, pid files) under one folder. Debian's slurm-wlm 22.05 and munge.
#
#   tests/slurm/start.sh STATE_DIR   # then: export SLURM_CONF=STATE_DIR/slurm.conf PATH=STATE_DIR/bin:$PATH
#   tests/slurm/stop.sh STATE_DIR    # kills only the processes whose pid files are in STATE_DIR
#
# One node with this machine's cores and memory, partitions "cpu" (default) and "gpu" (the same node, no
# GPUs: profiles must not request any). No accounting database: the executor plugin reads job states with
# squeue, so finished jobs are kept in slurmctld's memory for an hour (MinJobAge) for it to see them.
set -euo pipefail
state=$(realpath -m "${1:?usage: start.sh STATE_DIR}")
for tool in munged slurmctld slurmd sbatch squeue; do
    command -v "$tool" >/dev/null || { echo "start.sh: $tool not found: apt-get install slurm-wlm munge" >&2; exit 2; }
done
mkdir -p "$state"/{spool,state,munge}
chmod 700 "$state/munge"
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
port=$(( 20000 + RANDOM % 20000 ))

dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$state/munge/munge.key"
munged --force --key-file="$state/munge/munge.key" --socket="$state/munge/munge.socket" \
    --pid-file="$state/munged.pid" --log-file="$state/munged.log" --seed-file="$state/munge/munge.seed"

cat > "$state/slurm.conf" <<CONF
ClusterName=speechanim-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/state
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=3600
KillWait=5
SchedulerType=sched/backfill
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
CONF
# snakemake-executor-plugin-slurm-jobstep strips SLURM_* (SLURM_CONF too) from the environment of the srun
# it runs inside each job, so a config outside /etc/slurm is lost there: put this srun first on PATH.
mkdir -p "$state/bin"
printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$state/slurm.conf" "$(command -v srun)" > "$state/bin/srun"
chmod +x "$state/bin/srun"
export SLURM_CONF="$state/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qx idle; then
        echo "SLURM up: export SLURM_CONF=$SLURM_CONF PATH=$state/bin:\$PATH ($cpus CPUs, $mem_mb MB, partitions cpu and gpu)"
        exit 0
    fi
    sleep 0.5
done
echo "start.sh: the node did not come up; see $state/slurmctld.log and $state/slurmd.log" >&2
exit 1
