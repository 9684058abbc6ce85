# Ansible stdout callback used by garcon's ApplyAnsiblePlaybook.
#
# garcon runs `ansible-playbook` with ANSIBLE_STDOUT_CALLBACK=garcon and
# ANSIBLE_CALLBACK_PLUGINS=/usr/share/ansible/plugins/callback, forwards every
# line printed here to Chrome OS as progress, and reports the playbook as
# failed when the output contains the TASK_FAILED marker below.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
    name: garcon
    type: stdout
    short_description: progress lines for Chrome OS garcon
    description:
      - Prints one line per play, task and result, and a marker garcon
        recognises when a task fails.
"""

from ansible.plugins.callback import CallbackBase

TASK_FAILED_MARKER = "MESSAGE TO GARCON: TASK_FAILED"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "garcon"

    def _say(self, text):
        self._display.display(text)

    def v2_playbook_on_play_start(self, play):
        self._say("Starting play: %s" % play.get_name().strip())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._say("Starting task: %s" % task.get_name().strip())

    def v2_runner_on_ok(self, result):
        self._say("Task succeeded: %s" % result.task_name)

    def v2_runner_on_skipped(self, result):
        self._say("Task skipped: %s" % result.task_name)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        message = result._result.get("msg", "")
        if ignore_errors:
            self._say("Task failed (ignored): %s: %s" % (result.task_name, message))
            return
        self._say("Task failed: %s: %s" % (result.task_name, message))
        self._say(TASK_FAILED_MARKER)

    def v2_runner_on_unreachable(self, result):
        self._say("Host unreachable: %s" % result.task_name)
        self._say(TASK_FAILED_MARKER)

    def v2_playbook_on_stats(self, stats):
        for host in sorted(stats.processed.keys()):
            summary = stats.summarize(host)
            self._say(
                "Play recap %s: ok=%d changed=%d failed=%d unreachable=%d skipped=%d"
                % (
                    host,
                    summary["ok"],
                    summary["changed"],
                    summary["failures"],
                    summary["unreachable"],
                    summary["skipped"],
                )
            )
