#!/usr/bin/env bash
# A one-node Slurm on this machine, for `make test-slurm` (tests/test_slurm.py): Debian's
# slurmctld, slurmd and munge, configured under one state folder, listening on the loopback
# address only.
#
#   tools/slurm_local.sh start DIR   install the packages if missing (root and apt-get), write
#                                    DIR/slurm.conf, start munged, slurmctld and slurmd, wait
#                                    until the node takes jobs; prints the SLURM_CONF to use
#   tools/slurm_local.sh stop DIR    stop the three daemons started with DIR
#
# Exit status 3 (with the reason on one line) when Slurm cannot be had here: not root, no
# apt-get, or the install failed; the test then skips with that reason.
set -euo pipefail
cmd=${1:?usage: tools/slurm_local.sh start|stop DIR}
dir=$(mkdir -p "${2:?usage: tools/slurm_local.sh start|stop DIR}" && cd "$2" && pwd)

stop() {
    if [ -f "$dir/slurmctld.pid" ] && command -v scancel >/dev/null; then
        # Jobs first, while slurmd can still end them (KillWait: 30 s at most).
        SLURM_CONF="$dir/slurm.conf" scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 90); do
            [ -z "$(SLURM_CONF="$dir/slurm.conf" squeue -h 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    local pids=() pid
    for name in slurmd slurmctld munged; do
        if [ -f "$dir/$name.pid" ]; then pids+=("$(cat "$dir/$name.pid")"); fi
    done
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 20); do  # up to 10 s for them to end
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.5
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    # A job step the jobs' end left behind (slurmstepd outlives a slurmd killed under it).
    pkill -9 -f "^slurmstepd: \[" 2>/dev/null || true
    rm -f "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munged.pid
}

unavailable() {
    echo "slurm unavailable: $*" >&2
    exit 3
}

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    [ "$(id -u)" = 0 ] || unavailable "Debian's slurm-wlm is not installed and installing it needs root"
    command -v apt-get >/dev/null || unavailable "Debian's slurm-wlm is not installed and there is no apt-get"
    echo "slurm_local: installing slurmctld, slurmd, slurm-client and munge (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends slurmctld slurmd slurm-client munge; } >"$dir/apt.log" 2>&1 \
        || unavailable "apt-get install slurmctld slurmd slurm-client munge failed ($(tail -n 1 "$dir/apt.log"))"
}

start() {
    stop
    install
    [ "$(id -u)" = 0 ] || unavailable "the daemons run as root here (SlurmUser=root)"
    local host cpus
    host=$(hostname -s)
    cpus=$(nproc)
    chmod 755 "$dir"  # munged, as the munge user, writes below it
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chown munge:munge "$dir/munge"
    [ -s /etc/munge/munge.key ] || unavailable "/etc/munge/munge.key is missing (reinstall munge)"
    # munged drops to the munge user; its socket lives in DIR so that nothing else is touched.
    runuser -u munge -- /usr/sbin/munged --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed" 2>"$dir/munge/start.err" \
        || unavailable "munged did not start: $(tail -n 1 "$dir/munge/start.err")"
    cp "$dir/munge/munged.pid" "$dir/munged.pid"
    cat >"$dir/slurm.conf" <<EOF
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
# Seconds between the time limit's SIGTERM and SIGKILL: the snapshot is written in between.
KillWait=30
InactiveLimit=0
MinJobAge=600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" || unavailable "slurmctld did not start (see $dir/slurmctld.log)"
    slurmd -f "$SLURM_CONF" || unavailable "slurmd did not start (see $dir/slurmd.log)"
    for _ in $(seq 60); do
        if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
            echo "SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    unavailable "the node did not become idle within 30 s: $(sinfo -h -N -o '%N %t %E' 2>&1 | head -n 1)"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "usage: tools/slurm_local.sh start|stop DIR" >&2; exit 2 ;;
esac
