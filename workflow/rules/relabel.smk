# HDL pseudo-labels from a round's embeddings (embed.npz also holds the given labels, the model's
# probabilities and the true labels, which relabel reads from it for its diagnostics), and the
# extra labels stage 2 trains with.
rule relabel:
    input:
        f"{CELL}/round~{{round}}/embed.npz",
    output:
        labels=f"{CELL}/round~{{round}}/relabel.npz",
        report=f"{CELL}/round~{{round}}/relabel.json",
        extra_labels=f"{CELL}/round~{{round}}/extra_labels.npz",
    log:
        f"{LOGS}/{CELLS.wildcard_pattern}/round~{{round}}/relabel.log",
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
