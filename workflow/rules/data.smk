rule split:
    output:
        SPLIT,
    log:
        f"{LOGS}/split/{SPLITS.wildcard_pattern}.log",
    conda:
        HDL_ENV
    params:
        data=hdl.workflow.data_flags(config),
        split=hdl.workflow.split_flags(config),
    threads: 1
    resources:
        mem_mb=mem_mb("cpu"),
        runtime=runtime_minutes("cpu"),
    shell:
        "hdl split --dataset {wildcards.dataset} --labels {wildcards.labels}"
        " --imbalance {wildcards.imbalance} --seed {wildcards.seed} {params.split} {params.data}"
        " --out {output} > {log} 2>&1"
