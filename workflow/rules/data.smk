rule split:
    output:
        SPLIT,
    log:
        layout.split_log(W),
    conda:
        HDL_ENV
    params:
        data=hdl.workflow.data_flags(config),
        split=lambda wildcards: hdl.workflow.split_flags(config, wildcards),
    threads: 1
    resources:
        mem_mb=mem_mb("cpu"),
        runtime=runtime_minutes("cpu"),
    shell:
        "hdl split --dataset {wildcards.dataset} --labels {wildcards.labels}"
        " --imbalance {wildcards.imbalance} --seed {wildcards.seed} {params.split} {params.data}"
        " --out {output} > {log} 2>&1"
