#!/usr/bin/env bash
# A single-node Slurm on localhost for CI (Debian 12 -> Slurm 22.05), as root.
# Fake GPUs through gres; no accounting, so Snakemake must poll with squeue (see profiles/ci-slurm).
# Writes the PIDs of the daemons it started to $SLURM_TEST_DIR/pids; tests/slurm/stop.sh kills those.
set -euo pipefail
D=${SLURM_TEST_DIR:-/tmp/slurm-test}
AUTH=${SLURM_TEST_AUTH:-munge} # munge | none (auth/none exists only in older Slurm builds)

if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
  echo "start-slurm: a Slurm controller already answers; leaving it alone"
  exit 0
fi
if ! command -v slurmctld >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$D"/{state,spool,log}
touch "$D"/fakegpu0 "$D"/fakegpu1
: >"$D/pids"
MEM=$(($(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 8 / 10))
CPUS=$(nproc)
# slurm.conf must sit at the default path: the jobstep plugin drops SLURM_CONF before its srun.
mkdir -p /etc/slurm
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/$AUTH
CredType=cred/$AUTH
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job with no --mem gets the whole node
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
GresTypes=gpu
NodeName=localhost CPUs=$CPUS RealMemory=$MEM Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
printf 'AutoDetect=off\nNodeName=localhost Name=gpu File=%s/fakegpu[0-1]\n' "$D" >/etc/slurm/gres.conf

if [ "$AUTH" = munge ]; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do [ -s /run/munge/munged.pid ] && break; sleep 0.2; done
    cat /run/munge/munged.pid >>"$D/pids"
  fi
  munge -n | unmunge >/dev/null
fi

slurmctld -c # daemonises; -c: clean start, no jobs from an earlier run
slurmd
for _ in $(seq 1 30); do
  [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
  sleep 1
done
cat "$D/slurmctld.pid" "$D/slurmd.pid" >>"$D/pids"
sinfo -h -o %t | grep -qx idle || {
  echo "start-slurm: node not idle" >&2
  tail -20 "$D"/log/*.log >&2
  exit 1
}
sinfo
