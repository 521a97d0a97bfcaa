#!/usr/bin/env bash
# A single-node SLURM 22.05+ cluster on 127.0.0.1 for the tests, as root:
# munged, MariaDB + slurmdbd (accounting), slurmctld and slurmd, all with
# their configuration, state and logs under one directory.
#
#   cluster.sh start DIR [--no-accounting]   prints `export SLURM_CONF=...`
#   cluster.sh stop DIR
#
# Debian's packages: slurm-wlm munge slurmdbd mariadb-server (.ci/run).
set -euo pipefail

cmd=${1:?start|stop}; dir=$(realpath -m "${2:?DIR}"); shift 2
accounting=1
[ "${1:-}" = "--no-accounting" ] && accounting=0
host=$(hostname -s)

stop_pid() { # pidfile
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

if [ "$cmd" = stop ]; then
  stop_pid "$dir/slurmd.pid"
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/slurmdbd.pid"
  stop_pid "$dir/mariadb.pid"
  exit 0
fi

mkdir -p "$dir"/{spool/ctld,spool/d,log,db}
conf="$dir/slurm.conf"

# munge: one daemon for the machine; start it if none answers.
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# Ports chosen per directory so two clusters never share them by accident.
base=$(( 20000 + $(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 20000 ))
ctld_port=$base; d_port=$((base + 1)); dbd_port=$((base + 2)); db_port=$((base + 3))

node=$(slurmd -C | head -1 | sed 's/ UpTime.*//')
cat > "$conf" <<CONF
ClusterName=swestar
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
DefMemPerCPU=1000
MinJobAge=30
KillWait=2
SchedulerParameters=sched_interval=1
JobCompType=jobcomp/none
# Partition urgent preempts debug: how the tests make a job PREEMPTED on demand.
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=$host MaxTime=INFINITE State=UP PriorityTier=2
CONF

if [ "$accounting" = 1 ]; then
  # MariaDB with its own data directory and socket.
  # Run as root (explicitly allowed): test directories are often 0700.
  if [ ! -d "$dir/db/mysql" ]; then
    mariadb-install-db --user=root --datadir="$dir/db" --auth-root-authentication-method=socket >"$dir/log/mariadb-install.log" 2>&1
  fi
  /usr/sbin/mariadbd --user=root --datadir="$dir/db" --socket="$dir/mariadb.sock" \
    --pid-file="$dir/mariadb.pid" --port=$db_port --bind-address=127.0.0.1 \
    --log-error="$dir/log/mariadb.log" >/dev/null 2>&1 &
  for _ in $(seq 100); do mariadb --socket="$dir/mariadb.sock" -e 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done
  mariadb --socket="$dir/mariadb.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
  cat > "$dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=$host
DbdPort=$dbd_port
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$dir/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
CONF
  chmod 600 "$dir/slurmdbd.conf"
  cat >> "$conf" <<CONF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
JobAcctGatherType=jobacct_gather/none
CONF
  SLURM_CONF=$conf /usr/sbin/slurmdbd
  for _ in $(seq 100); do SLURM_CONF=$conf sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.1; done
  SLURM_CONF=$conf sacctmgr -i add cluster swestar >/dev/null 2>&1 || true
else
  echo "AccountingStorageType=accounting_storage/none" >> "$conf"
fi

SLURM_CONF=$conf /usr/sbin/slurmctld -i
SLURM_CONF=$conf /usr/sbin/slurmd
for _ in $(seq 200); do
  state=$(SLURM_CONF=$conf sinfo -h -o %t 2>/dev/null | head -1)
  case "$state" in idle|mix|alloc) break ;; esac
  sleep 0.1
done
[ "$state" = idle ] || { echo "cluster did not come up (node state: ${state:-none}); logs in $dir/log" >&2; exit 1; }
echo "export SLURM_CONF=$conf"
