// Kanban drag and drop. Without JavaScript each card's stage menu does the same: dropping a
// card picks the column's stage in that menu and submits the card's form, so the move goes
// through the same rules (and CSRF check) as any other change.
document.addEventListener("DOMContentLoaded", () => {
  for (const card of document.querySelectorAll(".kanban .card[draggable]")) {
    card.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("text/plain", card.id);
    });
  }
  for (const column of document.querySelectorAll(".kanban .column[data-stage]")) {
    column.addEventListener("dragover", (e) => { e.preventDefault(); column.classList.add("over"); });
    column.addEventListener("dragleave", () => column.classList.remove("over"));
    column.addEventListener("drop", (e) => {
      e.preventDefault();
      column.classList.remove("over");
      const card = document.getElementById(e.dataTransfer.getData("text/plain"));
      const form = card && card.querySelector("form.move");
      if (!form || column.contains(card)) return;
      form.querySelector("select[name=stage]").value = column.dataset.stage;
      form.submit();
    });
  }
});
