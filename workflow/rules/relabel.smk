# HDL pseudo-labels from a round's embeddings (embed.npz also holds the given labels, the model's
# probabilities and the true labels, which relabel reads from it for its diagnostics), and the
# extra labels stage 2 trains with.
rule relabel:
    input:
        f"{ROUND}/{layout.EMBED}",
    output:
        labels=f"{ROUND}/{layout.RELABEL}",
        report=f"{ROUND}/{layout.RELABEL_REPORT}",
        extra_labels=f"{ROUND}/{layout.EXTRA_LABELS}",
    log:
        layout.round_log(W, "relabel"),
    conda:
        HDL_ENV
    params:
        hdl=hdl.workflow.relabel_flags(config),
    threads: config["resources"]["cpu"]["threads"]
    resources:
        mem_mb=mem_mb("cpu"),
        runtime=runtime_minutes("cpu"),
    shell:
        "hdl relabel --embeddings {input} --out {output.labels} --report {output.report}"
        " --extra-labels-out {output.extra_labels} {params.hdl} --seed {wildcards.seed} --threads {threads}"
        " > {log} 2>&1"
