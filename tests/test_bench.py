"""``python -m poisonrepro.bench`` at its quick sizes: the numbers it prints are consistent."""
import pytest
import torch

from poisonrepro import bench, models


def test_matmul_peak_is_measured_and_plausible():
    peak = bench.matmul_peak((128, 256), min_run_time=0.1)
    assert peak["n"] in (128, 256) and 0.1 < peak["gflops"] < 1e5


def test_training_flops_count_forward_and_backward():
    net = models.build_model("convnet_bn")
    batch = (torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (4,)))
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as c:
        net(torch.rand(1, 3, 32, 32))
    per_image = bench.training_flops_per_image(net, batch)
    assert 2.5 * c.get_total_flops() < per_image < 3.5 * c.get_total_flops()  # backward ~ 2x forward


@pytest.mark.slow
def test_quick_bench_reports_every_victim_and_percent_of_peak(capsys):
    result = bench.run(quick=True, accuracy=False, victims=("convnet_bn", "regnetx_1_6gf_standin"))
    rows = result["throughput"]
    precisions = bench.precisions()
    assert [(r["victim"], r["precision"]) for r in rows] == [
        (v, p) for v in ("convnet_bn", models.display_name("regnetx_1_6gf_standin")) for p in precisions]
    for r in rows:  # each against the peak of its own precision
        assert r["images_per_s"] > 0
        peak = result["peaks"][r["precision"]]["gflops"]
        assert r["pct_of_peak"] == pytest.approx(100 * r["images_per_s"] * r["gflop_per_image"] / peak)
    assert [c["objective"].split(" (")[0].split(",")[0] for c in result["crafting"]] == [
        "gradient matching", "convex polytope", "clean-label backdoor", "hidden-trigger backdoor", "MetaPoison"]
    assert all(c["poison_steps_per_s"] > 0 for c in result["crafting"])
    text = bench.report(result)
    assert "STAND-IN" in text and "% of that precision's peak" in text and "poison-steps/s" in text
    assert "torch CPU capability" in text and "training precision in force" in text
    # every victim's share of the peak is checked against the goal, met or missed
    assert sum(line.startswith("- ") and "of the" in line and "peak" in line for line in text.splitlines()) == len(rows)


def test_goals_are_met_or_missed_by_a_stated_margin():
    result = {"peak": {"gflops": 431.0 / 2}, "throughput": [],  # half the reference peak: twice the seconds
              "accuracy": [{"victim": "v", "epochs": 4, "precision": "bf16", "seconds": 50.0, "test_accuracy": 0.81},
                           {"victim": "v", "epochs": 10, "precision": "bf16", "seconds": 300.0, "test_accuracy": 0.84}]}
    lines = bench.goal_checks(result)
    assert "x2.00" in lines[0]
    assert lines[1].startswith("- >= 80% in <= 60 s: met") and "-10 s against the goal" in lines[1]
    assert lines[2].startswith("- >= 85% in <= 240 s: missed (no budget reached it; the best: 84.0%")


def test_bench_rejects_unknown_victims_before_measuring():
    with pytest.raises(SystemExit):
        bench.main(["--victims", "resnet1000"])


@pytest.mark.slow
def test_plan_check_compares_measured_rates_with_the_plans_assumption():
    from poisonrepro import plan
    result = bench.plan_check("cpu", victims=("convnet_bn",), quick=True)
    fps = plan.gpu_throughput().flops_per_second
    (row,) = result["victims"]
    forward = plan.model_forward_flops(models.build_model("convnet_bn"), plan.CIFAR_IMAGE)
    assert row["assumed_images_per_s"] == pytest.approx(fps / (3 * forward))
    assert row["ratio"] == pytest.approx(row["images_per_s"] / row["assumed_images_per_s"])
    assert row["ratio"] < 0.01  # two CPU cores are far below an A100's sustained rate
    craft = result["crafting"]
    assert craft["ratio"] == pytest.approx(craft["poison_steps_per_s"] / craft["assumed_poison_steps_per_s"])
    assert "measured / assumed" in bench.plan_check_report(result)


def test_dpa_bench_times_the_batched_pass_against_the_loop_on_the_same_partitions():
    row = bench.dpa_case("mnist", 2, quick=True)
    assert row["partitions"] == 2 and row["images"] == 400   # smoke: the first 400 digits, both partitions
    assert row["loop_s"] > 0 and row["batched_s"] > 0
    assert row["speed_up"] == pytest.approx(row["loop_s"] / row["batched_s"])
    assert "| mnist k=2, 1 epoch | 2 | 400 |" in bench.run_dpa(quick=True)
