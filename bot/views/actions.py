"""The ids of the buttons budget-guard posts: the views put them on the buttons, the listeners
register for them, so a renamed button cannot leave its listener behind."""

ALERT_ACTIONS_BLOCK = "alert_actions"
ACKNOWLEDGE = "alert_ack"
SNOOZE = "alert_snooze"
BREAKDOWN = "alert_breakdown"
STOP_ENDPOINT = "endpoint_stop"
