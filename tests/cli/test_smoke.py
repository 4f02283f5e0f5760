from tests.support.workspace import Workspace


def test_a_new_service_is_planned_applied_and_then_the_plan_is_empty(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", """
        kind: Service
        name: api
        type: app
    """)
    planned = workspace.qrm("plan", "--no-refresh")
    assert planned.exit_code == 0, planned.output
    assert "+ service.api" in planned.output
    applied = workspace.qrm("apply", "--yes", "--no-refresh")
    assert applied.exit_code == 0, applied.output
    assert '"port": 8000' in workspace.lockfile.read_text()
    again = workspace.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output
