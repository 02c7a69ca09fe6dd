package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/outcomes"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// outcomesBody accepts one outcome or a batch.
type outcomesBody struct {
	api.Outcome
	Outcomes []api.Outcome `json:"outcomes"`
}

// outcomes handles POST /circuits/{id}/outcomes.
func (h *handler) outcomes(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	id := r.PathValue("id")
	if err := circuit.ValidateID(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if h.services != nil && !h.services[id] {
		writeError(w, http.StatusForbidden, fmt.Sprintf("service %q is not in %s: this function is not attached to it", id, api.EnvServices))
		return
	}
	outs, status, err := parseOutcomes(r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	res, err := h.brk.Report(r.Context(), id, outs)
	if err != nil && res.Accepted == 0 {
		// None was taken (the extension is shutting down, or memory holds
		// the counts of the most circuits it keeps): the caller must know
		// they were not counted.
		if errors.Is(err, outcomes.ErrFull) {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		// The outcomes were taken; only applying a probe outcome failed.
		h.log.Warn("applying a probe outcome failed", "service", id, "error", err.Error())
	}
	writeJSON(w, http.StatusAccepted, res)
}

func parseOutcomes(r *http.Request) ([]api.Outcome, int, error) {
	var body outcomesBody
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("body must be an outcome {\"success\":bool,\"latencyMs\":n} or {\"outcomes\":[...]}: %w", err)
	}
	if dec.More() {
		return nil, http.StatusBadRequest, fmt.Errorf("trailing data after the JSON body")
	}
	var outs []api.Outcome
	switch {
	case body.Outcomes != nil:
		if body.Success != nil || body.LatencyMs != 0 || body.ProbeToken != "" {
			return nil, http.StatusBadRequest, fmt.Errorf("send either one outcome or an outcomes list, not both")
		}
		outs = body.Outcomes
	default:
		outs = []api.Outcome{body.Outcome}
	}
	if len(outs) == 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("outcomes is empty")
	}
	if len(outs) > api.MaxOutcomes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("too many outcomes: at most %d per request", api.MaxOutcomes)
	}
	for i, o := range outs {
		where := "outcome"
		if body.Outcomes != nil {
			where = "outcomes[" + strconv.Itoa(i) + "]"
		}
		if o.Success == nil {
			return nil, http.StatusBadRequest, fmt.Errorf("%s: success is required (true or false)", where)
		}
		if o.LatencyMs < 0 || o.LatencyMs > api.MaxLatencyMs {
			return nil, http.StatusBadRequest, fmt.Errorf("%s: latencyMs %d is out of range 0..%d", where, o.LatencyMs, api.MaxLatencyMs)
		}
		if len(o.ProbeToken) > 64 || bytes.ContainsAny([]byte(o.ProbeToken), " \t\r\n") {
			return nil, http.StatusBadRequest, fmt.Errorf("%s: malformed probeToken", where)
		}
	}
	return outs, 0, nil
}
