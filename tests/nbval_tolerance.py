"""A pytest plugin for the golden tests' nbval (`-p nbval_tolerance`): in the cells tagged `cakd-metrics`,
training values within their measured tolerance of the golden's count as equal (goldens.within_tolerance);
nbval compares everything else, and reports a value beyond its tolerance as its usual output mismatch."""
from nbformat.v4 import new_output
from nbval.plugin import IPyNbCell

from goldens import within_tolerance

_compare_outputs = IPyNbCell.compare_outputs


def _stream(outputs):
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def compare_outputs(self, test, ref, skip_compare=None):
    if "cakd-metrics" in self.cell.metadata.get("tags", []):
        fresh = within_tolerance(_stream(ref), _stream(test))
        test = [o for o in test if o.get("output_type") != "stream"] + [
            new_output("stream", name="stdout", text=fresh)] if fresh else test
    return _compare_outputs(self, test, ref, skip_compare)


IPyNbCell.compare_outputs = compare_outputs
