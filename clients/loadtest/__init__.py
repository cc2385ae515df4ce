"""The authorization load generator behind ``setpay bench authorize`` (docs/BENCHMARKS.md).

    prepare     the merchant and cardholders, registered the full way; signed purchases
                and the merchant's AuthReqs, all made before any clock starts
    channels    mutual-TLS channels, each its own connection (SO_REUSEPORT balancing)
    load        open loop (fixed arrival rate, latency from the scheduled time) and
                closed loop (fixed number of callers)
    tally       every request accounted for; answers opened and verified afterwards
    holds       the holds the bank's ledger made in a run, held to the approvals
    plan        the steps of a run and the services they hit (gateway, ceiling, echo)
    bench       a run: warm-up, steps, tallies
    report      text and JSON; plot (matplotlib, optional) draws latency against rate
    cpu         server CPU from /proc (spawned processes) or a metrics scrape
    speed       the machine's speed during each run, sampled by a small child process
    spawn       the bank and reference services the bench starts itself
    progress    the preparation's progress bar (stderr)
    errors      the error tree (``BenchError``), documented there

The bank is reached only over gRPC and through callables the command line gives (opening
card accounts in the bank's ledger, reading its debit sums): the clients never import the
bank.
"""
