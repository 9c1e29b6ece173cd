# Training (`hdl train`) and embedding (`hdl embed`).
# A run's declared output is its metrics.json, written once training has finished; its checkpoint.pt,
# saved every `save_every` steps, is deliberately not an output: Snakemake deletes the outputs of a
# failed job and of a job it reruns, and the checkpoint must survive a kill or a SLURM time-out so
# that the rerun (or the retry) resumes from it. Later steps find it next to metrics.json.
# On SLURM a training job is warned resources.time_limit_margin_s before its time limit (slurm_extra):
# `hdl train` saves its checkpoint after the current step and exits 75, and the retry resumes from it.
rule train_stage1:
    input:
        split=layout.split_file,
    output:
        metrics=f"{STAGE1}/{layout.METRICS}",
    log:
        layout.stage1_log(W),
    conda:
        HDL_ENV
    params:
        out_dir=lambda wildcards, output: Path(output.metrics).parent,
        train=lambda wildcards: hdl.workflow.train_flags(config, wildcards, stage=1),
        hdl=hdl.workflow.relabel_flags(config),  # the label probe labels as `hdl relabel` does
        wandb=lambda wildcards: hdl.workflow.wandb_flags(config, wildcards, "stage1"),
        data=hdl.workflow.data_flags(config),
        device=config["device"],
    threads: config["resources"]["train"]["threads"]
    resources:
        gpu=hdl.workflow.uses_gpu(config),
        mem_mb=mem_mb("train"),
        runtime=runtime_minutes("train"),
        slurm_extra=hdl.workflow.time_limit_warning(config),
    shell:
        "hdl train --dataset {wildcards.dataset} --labels {wildcards.labels} --imbalance {wildcards.imbalance}"
        " --seed {wildcards.seed} --method {wildcards.method} --split {input.split} {params.train} {params.hdl}"
        " --device {params.device} --threads {threads} {params.data} {params.wandb} --out {params.out_dir} > {log} 2>&1"


rule train_stage2:
    input:
        unpack(stage2_inputs),
    output:
        metrics=f"{STAGE2}/{layout.METRICS}",
    log:
        layout.stage2_log(W),
    conda:
        HDL_ENV
    params:
        out_dir=lambda wildcards, output: Path(output.metrics).parent,
        start=lambda wildcards, input: checkpoint_of(input.start),
        # the HDL variant's labels (and their refresh); the baseline has none
        extra_labels=lambda wildcards, input: (
            hdl.workflow.extra_label_flags(config, input.extra_labels) if "extra_labels" in input.keys() else ""
        ),
        train=lambda wildcards: hdl.workflow.train_flags(config, wildcards, stage=2),
        hdl=hdl.workflow.relabel_flags(config),  # the label probe and the refresh label as `hdl relabel` does
        wandb=lambda wildcards: hdl.workflow.wandb_flags(
            config, wildcards, hdl.workflow.stage2_run_name(int(wildcards.round), wildcards.variant, ROUNDS)
        ),
        data=hdl.workflow.data_flags(config),
        device=config["device"],
    threads: config["resources"]["train"]["threads"]
    resources:
        gpu=hdl.workflow.uses_gpu(config),
        mem_mb=mem_mb("train"),
        runtime=runtime_minutes("train"),
        slurm_extra=hdl.workflow.time_limit_warning(config),
    shell:
        "hdl train --dataset {wildcards.dataset} --labels {wildcards.labels} --imbalance {wildcards.imbalance}"
        " --seed {wildcards.seed} --method {wildcards.method} --split {input.split} --init {params.start}"
        " {params.extra_labels} {params.train} {params.hdl} --device {params.device} --threads {threads} {params.data} {params.wandb}"
        " --out {params.out_dir} > {log} 2>&1"


rule embed:
    input:
        split=layout.split_file,
        # round R embeds with the model stage 2 of round R continues from, the HDL variant's
        start=lambda wildcards: f"{layout.start_dir({**dict(wildcards.items()), 'variant': 'hdl'})}/{layout.METRICS}",
    output:
        f"{ROUND}/{layout.EMBED}",
    log:
        layout.round_log(W, "embed"),
    conda:
        HDL_ENV
    params:
        checkpoint=lambda wildcards, input: checkpoint_of(input.start),
        data=hdl.workflow.data_flags(config),
        device=config["device"],
    threads: config["resources"]["embed"]["threads"]
    resources:
        gpu=hdl.workflow.uses_gpu(config),
        mem_mb=mem_mb("embed"),
        runtime=runtime_minutes("embed"),
    shell:
        "hdl embed --checkpoint {params.checkpoint} --dataset {wildcards.dataset} --split {input.split}"
        " --device {params.device} --threads {threads} {params.data} --out {output} > {log} 2>&1"
