
use builtin;
use str;

set edit:completion:arg-completer[lockrun] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'lockrun'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'lockrun'= {
            cand -b 'Where locks live [default: lock files in a private per-user directory]'
            cand --backend 'Where locks live [default: lock files in a private per-user directory]'
            cand -c 'Run STRING with /bin/sh -c instead of COMMAND'
            cand --command 'Run STRING with /bin/sh -c instead of COMMAND'
            cand -w 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]'
            cand --wait 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]'
            cand -E 'Exit code when the lock could not be had'
            cand --conflict-exit-code 'Exit code when the lock could not be had'
            cand --ttl 'Lease length for remote backends, renewed every ttl/3 while the command runs'
            cand --slots 'Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)'
            cand --kill-after 'Grace between SIGTERM and SIGKILL when lockrun must stop the command'
            cand --max-time 'Stop the command (exit 124) if it runs longer than this; 0 means no limit'
            cand --events 'Append one JSON line per event (waiting, acquired, renewed, lost, released, ...) to FILE or descriptor N'
            cand --metrics-file 'Add this run to a node_exporter textfile-collector file (acquisitions, busy exits, losses, wait and hold times)'
            cand -v 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand --verbose 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand -q 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand --quiet 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand -s 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive'
            cand --shared 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive'
            cand -n 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
            cand --no-wait 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
            cand --kill-escaped 'Also stop processes that left the command''s process group'
            cand --exec 'Exec mode (file backend only): take the lock, then become the command'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand run 'Run a command under the lock (the default; needed when the lock is called status, list, acquire, release or run)'
            cand status 'Show whether NAME is held, by whom, since when and until when'
            cand list 'List the locks the backend knows about'
            cand acquire 'Take NAME and keep it for later steps of a job, until PID exits'
            cand release 'End a lock that ''lockrun acquire'' keeps; with --force, break any holder''s lock'
            cand doctor 'Check the backend''s setup for what silently breaks exclusion'
        }
        &'lockrun;run'= {
            cand -c 'Run STRING with /bin/sh -c instead of COMMAND'
            cand --command 'Run STRING with /bin/sh -c instead of COMMAND'
            cand -w 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]'
            cand --wait 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]'
            cand -E 'Exit code when the lock could not be had'
            cand --conflict-exit-code 'Exit code when the lock could not be had'
            cand --ttl 'Lease length for remote backends, renewed every ttl/3 while the command runs'
            cand --slots 'Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)'
            cand --kill-after 'Grace between SIGTERM and SIGKILL when lockrun must stop the command'
            cand --max-time 'Stop the command (exit 124) if it runs longer than this; 0 means no limit'
            cand --events 'Append one JSON line per event (waiting, acquired, renewed, lost, released, ...) to FILE or descriptor N'
            cand --metrics-file 'Add this run to a node_exporter textfile-collector file (acquisitions, busy exits, losses, wait and hold times)'
            cand -b 'Where locks live [default: lock files in a private per-user directory]'
            cand --backend 'Where locks live [default: lock files in a private per-user directory]'
            cand -s 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive'
            cand --shared 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive'
            cand -n 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
            cand --no-wait 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
            cand --kill-escaped 'Also stop processes that left the command''s process group'
            cand --exec 'Exec mode (file backend only): take the lock, then become the command'
            cand -v 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand --verbose 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand -q 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand --quiet 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'lockrun;status'= {
            cand --slots 'Number of slots, if NAME is used with --slots [default: discovered]'
            cand -b 'Where locks live [default: lock files in a private per-user directory]'
            cand --backend 'Where locks live [default: lock files in a private per-user directory]'
            cand --json 'Machine-readable output (schema "lockrun.status/1")'
            cand --exit-status 'Exit 0 if NAME is free, 1 if it is held (any slot), for scripts'
            cand -v 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand --verbose 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand -q 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand --quiet 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'lockrun;list'= {
            cand -b 'Where locks live [default: lock files in a private per-user directory]'
            cand --backend 'Where locks live [default: lock files in a private per-user directory]'
            cand --json 'Machine-readable output (schema "lockrun.list/1")'
            cand -v 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand --verbose 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand -q 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand --quiet 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'lockrun;acquire'= {
            cand --for-pid 'Keep the lock until this process exits [default: lockrun''s parent]'
            cand -w 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]'
            cand --wait 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]'
            cand -E 'Exit code when the lock could not be had'
            cand --conflict-exit-code 'Exit code when the lock could not be had'
            cand --ttl 'Lease length for remote backends, renewed every ttl/3 by the keeper'
            cand --slots 'Semaphore: take one of N slots of NAME'
            cand -b 'Where locks live [default: lock files in a private per-user directory]'
            cand --backend 'Where locks live [default: lock files in a private per-user directory]'
            cand -n 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
            cand --no-wait 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
            cand --json 'Print one JSON line (schema "lockrun.acquire/1") once the lock is held'
            cand -v 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand --verbose 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand -q 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand --quiet 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'lockrun;release'= {
            cand --slots 'Number of slots, if NAME is used with --slots [default: discovered]'
            cand --for-pid 'End the keeper that ''lockrun acquire --for-pid PID'' started [default: the job''s]'
            cand -b 'Where locks live [default: lock files in a private per-user directory]'
            cand --backend 'Where locks live [default: lock files in a private per-user directory]'
            cand --force 'Really break the lock, whoever holds it'
            cand -v 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand --verbose 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand -q 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand --quiet 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'lockrun;doctor'= {
            cand -b 'Where locks live [default: lock files in a private per-user directory]'
            cand --backend 'Where locks live [default: lock files in a private per-user directory]'
            cand -v 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand --verbose 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
            cand -q 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand --quiet 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
    ]
    $completions[$command]
}
