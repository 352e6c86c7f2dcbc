
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'lockrun' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'lockrun'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'lockrun' {
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Run STRING with /bin/sh -c instead of COMMAND')
            [CompletionResult]::new('--command', '--command', [CompletionResultType]::ParameterName, 'Run STRING with /bin/sh -c instead of COMMAND')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]')
            [CompletionResult]::new('-E', '-E ', [CompletionResultType]::ParameterName, 'Exit code when the lock could not be had')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit code when the lock could not be had')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lease length for remote backends, renewed every ttl/3 while the command runs')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)')
            [CompletionResult]::new('--kill-after', '--kill-after', [CompletionResultType]::ParameterName, 'Grace between SIGTERM and SIGKILL when lockrun must stop the command')
            [CompletionResult]::new('--max-time', '--max-time', [CompletionResultType]::ParameterName, 'Stop the command (exit 124) if it runs longer than this; 0 means no limit')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Append one JSON line per event (waiting, acquired, renewed, lost, released, ...) to FILE or descriptor N')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Add this run to a node_exporter textfile-collector file (acquisitions, busy exits, losses, wait and hold times)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive')
            [CompletionResult]::new('--shared', '--shared', [CompletionResultType]::ParameterName, 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)')
            [CompletionResult]::new('--kill-escaped', '--kill-escaped', [CompletionResultType]::ParameterName, 'Also stop processes that left the command''s process group')
            [CompletionResult]::new('--exec', '--exec', [CompletionResultType]::ParameterName, 'Exec mode (file backend only): take the lock, then become the command')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'Run a command under the lock (the default; needed when the lock is called status, list, acquire, release or run)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether NAME is held, by whom, since when and until when')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the locks the backend knows about')
            [CompletionResult]::new('acquire', 'acquire', [CompletionResultType]::ParameterValue, 'Take NAME and keep it for later steps of a job, until PID exits')
            [CompletionResult]::new('release', 'release', [CompletionResultType]::ParameterValue, 'End a lock that ''lockrun acquire'' keeps; with --force, break any holder''s lock')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check the backend''s setup for what silently breaks exclusion')
            break
        }
        'lockrun;run' {
            [CompletionResult]::new('-c', '-c', [CompletionResultType]::ParameterName, 'Run STRING with /bin/sh -c instead of COMMAND')
            [CompletionResult]::new('--command', '--command', [CompletionResultType]::ParameterName, 'Run STRING with /bin/sh -c instead of COMMAND')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]')
            [CompletionResult]::new('-E', '-E ', [CompletionResultType]::ParameterName, 'Exit code when the lock could not be had')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit code when the lock could not be had')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lease length for remote backends, renewed every ttl/3 while the command runs')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)')
            [CompletionResult]::new('--kill-after', '--kill-after', [CompletionResultType]::ParameterName, 'Grace between SIGTERM and SIGKILL when lockrun must stop the command')
            [CompletionResult]::new('--max-time', '--max-time', [CompletionResultType]::ParameterName, 'Stop the command (exit 124) if it runs longer than this; 0 means no limit')
            [CompletionResult]::new('--events', '--events', [CompletionResultType]::ParameterName, 'Append one JSON line per event (waiting, acquired, renewed, lost, released, ...) to FILE or descriptor N')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Add this run to a node_exporter textfile-collector file (acquisitions, busy exits, losses, wait and hold times)')
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('-s', '-s', [CompletionResultType]::ParameterName, 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive')
            [CompletionResult]::new('--shared', '--shared', [CompletionResultType]::ParameterName, 'Take a shared (reader) lock: any number of shared holders at once, or one exclusive')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)')
            [CompletionResult]::new('--kill-escaped', '--kill-escaped', [CompletionResultType]::ParameterName, 'Also stop processes that left the command''s process group')
            [CompletionResult]::new('--exec', '--exec', [CompletionResultType]::ParameterName, 'Exec mode (file backend only): take the lock, then become the command')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'lockrun;status' {
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Number of slots, if NAME is used with --slots [default: discovered]')
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine-readable output (schema "lockrun.status/1")')
            [CompletionResult]::new('--exit-status', '--exit-status', [CompletionResultType]::ParameterName, 'Exit 0 if NAME is free, 1 if it is held (any slot), for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'lockrun;list' {
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine-readable output (schema "lockrun.list/1")')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'lockrun;acquire' {
            [CompletionResult]::new('--for-pid', '--for-pid', [CompletionResultType]::ParameterName, 'Keep the lock until this process exits [default: lockrun''s parent]')
            [CompletionResult]::new('-w', '-w', [CompletionResultType]::ParameterName, 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]')
            [CompletionResult]::new('-E', '-E ', [CompletionResultType]::ParameterName, 'Exit code when the lock could not be had')
            [CompletionResult]::new('--conflict-exit-code', '--conflict-exit-code', [CompletionResultType]::ParameterName, 'Exit code when the lock could not be had')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'Lease length for remote backends, renewed every ttl/3 by the keeper')
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Semaphore: take one of N slots of NAME')
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print one JSON line (schema "lockrun.acquire/1") once the lock is held')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'lockrun;release' {
            [CompletionResult]::new('--slots', '--slots', [CompletionResultType]::ParameterName, 'Number of slots, if NAME is used with --slots [default: discovered]')
            [CompletionResult]::new('--for-pid', '--for-pid', [CompletionResultType]::ParameterName, 'End the keeper that ''lockrun acquire --for-pid PID'' started [default: the job''s]')
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Really break the lock, whoever holds it')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'lockrun;doctor' {
            [CompletionResult]::new('-b', '-b', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'Where locks live [default: lock files in a private per-user directory]')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
