# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_lockrun_global_optspecs
    string join \n b/backend= v/verbose q/quiet c/command= w/wait= s/shared n/no-wait E/conflict-exit-code= ttl= slots= kill-after= kill-escaped max-time= exec events= metrics-file= h/help V/version
end

function __fish_lockrun_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_lockrun_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_lockrun_using_subcommand
    set -l cmd (__fish_lockrun_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s b -l backend -d 'Where locks live [default: lock files in a private per-user directory]' -r -f
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s c -l command -d 'Run STRING with /bin/sh -c instead of COMMAND' -r -f -a "(__fish_complete_command)"
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s w -l wait -d 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s E -l conflict-exit-code -d 'Exit code when the lock could not be had' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l ttl -d 'Lease length for remote backends, renewed every ttl/3 while the command runs' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l slots -d 'Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l kill-after -d 'Grace between SIGTERM and SIGKILL when lockrun must stop the command' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l max-time -d 'Stop the command (exit 124) if it runs longer than this; 0 means no limit' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l events -d 'Append one JSON line per event (waiting, acquired, renewed, lost, released, ...) to FILE or descriptor N' -r -F
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l metrics-file -d 'Add this run to a node_exporter textfile-collector file (acquisitions, busy exits, losses, wait and hold times)' -r -F
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s v -l verbose -d 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s q -l quiet -d 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s s -l shared -d 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s n -l no-wait -d 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l kill-escaped -d 'Also stop processes that left the command\'s process group'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -l exec -d 'Exec mode (file backend only): take the lock, then become the command'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -s V -l version -d 'Print version'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -a "run" -d 'Run a command under the lock (the default; needed when the lock is called status, list, acquire, release or run)'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -a "status" -d 'Show whether NAME is held, by whom, since when and until when'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -a "list" -d 'List the locks the backend knows about'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -a "acquire" -d 'Take NAME and keep it for later steps of a job, until PID exits'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -a "release" -d 'End a lock that \'lockrun acquire\' keeps; with --force, break any holder\'s lock'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_needs_command" -a "doctor" -d 'Check the backend\'s setup for what silently breaks exclusion'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s c -l command -d 'Run STRING with /bin/sh -c instead of COMMAND' -r -f -a "(__fish_complete_command)"
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s w -l wait -d 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s E -l conflict-exit-code -d 'Exit code when the lock could not be had' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l ttl -d 'Lease length for remote backends, renewed every ttl/3 while the command runs' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l slots -d 'Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l kill-after -d 'Grace between SIGTERM and SIGKILL when lockrun must stop the command' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l max-time -d 'Stop the command (exit 124) if it runs longer than this; 0 means no limit' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l events -d 'Append one JSON line per event (waiting, acquired, renewed, lost, released, ...) to FILE or descriptor N' -r -F
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l metrics-file -d 'Add this run to a node_exporter textfile-collector file (acquisitions, busy exits, losses, wait and hold times)' -r -F
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s b -l backend -d 'Where locks live [default: lock files in a private per-user directory]' -r -f
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s s -l shared -d 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s n -l no-wait -d 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l kill-escaped -d 'Also stop processes that left the command\'s process group'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -l exec -d 'Exec mode (file backend only): take the lock, then become the command'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s v -l verbose -d 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s q -l quiet -d 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status" -l slots -d 'Number of slots, if NAME is used with --slots [default: discovered]' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status" -s b -l backend -d 'Where locks live [default: lock files in a private per-user directory]' -r -f
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status" -l json -d 'Machine-readable output (schema "lockrun.status/1")'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status" -l exit-status -d 'Exit 0 if NAME is free, 1 if it is held (any slot), for scripts'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status" -s v -l verbose -d 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status" -s q -l quiet -d 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand list" -s b -l backend -d 'Where locks live [default: lock files in a private per-user directory]' -r -f
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand list" -l json -d 'Machine-readable output (schema "lockrun.list/1")'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand list" -s v -l verbose -d 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand list" -s q -l quiet -d 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -l for-pid -d 'Keep the lock until this process exits [default: lockrun\'s parent]' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -s w -l wait -d 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -s E -l conflict-exit-code -d 'Exit code when the lock could not be had' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -l ttl -d 'Lease length for remote backends, renewed every ttl/3 by the keeper' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -l slots -d 'Semaphore: take one of N slots of NAME' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -s b -l backend -d 'Where locks live [default: lock files in a private per-user directory]' -r -f
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -s n -l no-wait -d 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -l json -d 'Print one JSON line (schema "lockrun.acquire/1") once the lock is held'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -s v -l verbose -d 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -s q -l quiet -d 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand acquire" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand release" -l slots -d 'Number of slots, if NAME is used with --slots [default: discovered]' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand release" -l for-pid -d 'End the keeper that \'lockrun acquire --for-pid PID\' started [default: the job\'s]' -r
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand release" -s b -l backend -d 'Where locks live [default: lock files in a private per-user directory]' -r -f
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand release" -l force -d 'Really break the lock, whoever holds it'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand release" -s v -l verbose -d 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand release" -s q -l quiet -d 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand release" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand doctor" -s b -l backend -d 'Where locks live [default: lock files in a private per-user directory]' -r -f
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand doctor" -s v -l verbose -d 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand doctor" -s q -l quiet -d 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code'
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'

# Added by lockrun's generator (src/completion/): lock names for status and
# release come from the backend (`lockrun --complete-names [URL]`), and after
# `--` the command's own words are completed, as sudo's and timeout's
# completions do; lockrun's own options are not offered there.
function __lockrun_after_dashdash
    contains -- -- (commandline -opc)
end

function __lockrun_names
    set -l tokens (commandline -opc)
    set -l url
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case -b --backend
                set -l next (math $i + 1)
                set -q tokens[$next]; and set url $tokens[$next]
            case '--backend=*'
                set url (string replace -- --backend= '' $tokens[$i])
        end
    end
    $tokens[1] --complete-names $url 2>/dev/null
end

function __lockrun_complete_command
    set -l tokens (commandline -opc)
    set -l at (contains -i -- -- $tokens)
    set -l line (string escape -- $tokens[(math $at + 1)..-1]) (commandline -ct)
    complete --do-complete=(string join ' ' -- $line)
end

complete -c lockrun -n "__lockrun_after_dashdash" -f -a "(__lockrun_complete_command)"
complete -c lockrun -n "not __lockrun_after_dashdash; and __fish_lockrun_using_subcommand status release" -f -a "(__lockrun_names)" -d 'lock'
